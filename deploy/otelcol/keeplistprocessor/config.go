// Package keeplistprocessor names each process resource by a keep-list file the collector reads
// while it runs: a process whose name is not in the file is renamed to `other`. A change of the
// file needs no collector reload, so the stateful processors after it (deltatocumulative) keep
// their sums across keep-list changes.
package keeplistprocessor

import "errors"

// Config of the processor.
type Config struct {
	// Path of the keep-list file: a JSON array of process names (Phoenix's keep-list format).
	Path string `mapstructure:"path"`
	// Attribute holds a resource's process name.
	Attribute string `mapstructure:"attribute"`
	// Other is the name a process not in the file is given.
	Other string `mapstructure:"other"`
}

// Validate is called by the collector when it loads the config.
func (c *Config) Validate() error {
	if c.Path == "" {
		return errors.New("path must name the keep-list file")
	}
	if c.Attribute == "" {
		return errors.New("attribute must not be empty")
	}
	if c.Other == "" {
		return errors.New("other must not be empty")
	}
	return nil
}
