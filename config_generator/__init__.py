"""Phoenix config_generator."""
