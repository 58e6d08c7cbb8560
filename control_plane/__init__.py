"""Phoenix control_plane."""
