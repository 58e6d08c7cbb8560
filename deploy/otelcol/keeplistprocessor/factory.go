package keeplistprocessor

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"
)

var componentType = component.MustNewType("phoenixkeeplist")

// NewFactory returns the factory the collector builder registers.
func NewFactory() processor.Factory {
	return processor.NewFactory(
		componentType,
		func() component.Config {
			return &Config{Attribute: "process.executable.name", Other: "other"}
		},
		processor.WithMetrics(createMetrics, component.StabilityLevelAlpha),
	)
}

func createMetrics(
	ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Metrics,
) (processor.Metrics, error) {
	p := newKeepList(cfg.(*Config), set.Logger)
	return processorhelper.NewMetrics(
		ctx, set, cfg, next, p.process,
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: true}),
	)
}
