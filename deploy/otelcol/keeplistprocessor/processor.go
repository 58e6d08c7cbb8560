package keeplistprocessor

import (
	"context"
	"encoding/json"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"
)

// keepList renames every process resource whose name the keep-list file does not hold.
//
// A name that joins the file is announced before its data moves: in the first batch that holds a
// counter's point (a monotonic sum), a copy of a resource with every counter at 0 (other metrics left
// out) goes under the name: its own resource when it has a process in the batch (whose data still goes
// to `other` this once), else any other resource's. A backend's rate() reads no increase from a
// series' first point, so the new series starts at 0 and counts its next increase in full, while
// `other` counted this batch: no interval of CPU is lost when the list changes, and a name kept while
// it has no process (a cron job between runs) loses none of its next run. A name that leaves the file goes to `other` at once
// (`other` already has points, so its next increase counts).
type keepList struct {
	cfg    *Config
	logger *zap.Logger

	mu       sync.Mutex
	loaded   bool
	info     os.FileInfo
	modTime  time.Time
	size     int64
	kept     map[string]struct{} // names whose data goes under their own name
	pending  map[string]struct{} // names in the file, not announced yet
	warnedAt time.Time
}

func newKeepList(cfg *Config, logger *zap.Logger) *keepList {
	return &keepList{
		cfg: cfg, logger: logger,
		kept: map[string]struct{}{}, pending: map[string]struct{}{},
	}
}

// refresh reads the file again when it was replaced or its modification time or size changed. A file that is missing
// or not a JSON array of strings leaves the last list in place (and is logged once a minute).
func (k *keepList) refresh() {
	info, err := os.Stat(k.cfg.Path)
	if err != nil {
		k.warn("keep-list file unreadable; keeping the last list", err)
		return
	}
	// Same file (an atomic rewrite replaces it), same time and size: unchanged.
	if k.loaded && os.SameFile(info, k.info) && info.ModTime().Equal(k.modTime) && info.Size() == k.size {
		return
	}
	data, err := os.ReadFile(k.cfg.Path)
	if err != nil {
		k.warn("keep-list file unreadable; keeping the last list", err)
		return
	}
	var names []string
	if err := json.Unmarshal(data, &names); err != nil {
		k.warn("keep-list file is not a JSON array of names; keeping the last list", err)
		return
	}
	next := make(map[string]struct{}, len(names))
	for _, n := range names {
		next[n] = struct{}{}
	}
	var added, removed int
	for n := range k.kept {
		if _, ok := next[n]; !ok {
			delete(k.kept, n)
			removed++
		}
	}
	for n := range k.pending {
		if _, ok := next[n]; !ok {
			delete(k.pending, n)
		}
	}
	for n := range next {
		_, kept := k.kept[n]
		_, pending := k.pending[n]
		if !kept && !pending {
			k.pending[n] = struct{}{}
			added++
		}
	}
	k.loaded, k.info, k.modTime, k.size = true, info, info.ModTime(), info.Size()
	k.logger.Info("keep-list loaded", zap.String("path", k.cfg.Path),
		zap.Int("names", len(next)), zap.Int("added", added), zap.Int("removed", removed))
}

func (k *keepList) warn(msg string, err error) {
	if now := time.Now(); now.Sub(k.warnedAt) >= time.Minute {
		k.warnedAt = now
		k.logger.Warn(msg, zap.String("path", k.cfg.Path), zap.Error(err))
	}
}

func (k *keepList) process(_ context.Context, md pmetric.Metrics) (pmetric.Metrics, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.refresh()

	rms := md.ResourceMetrics()
	announced := map[string]struct{}{}
	copies := pmetric.NewResourceMetricsSlice()
	var template *pmetric.ResourceMetrics
	for i := 0; i < rms.Len(); i++ {
		rm := rms.At(i)
		attrs := rm.Resource().Attributes()
		value, ok := attrs.Get(k.cfg.Attribute)
		if !ok {
			continue
		}
		name := value.AsString()
		if template == nil && len(k.pending) > 0 {
			// Any resource with a counter's point: what a pending name with no process in this batch is
			// announced from (after transform keeps only the name, every resource's series look alike).
			zeroed := pmetric.NewResourceMetrics()
			rm.CopyTo(zeroed)
			if zeroCounters(zeroed) > 0 {
				template = &zeroed
			}
		}
		if _, kept := k.kept[name]; kept {
			continue
		}
		if _, pending := k.pending[name]; pending {
			// Announced only by a copy that holds a counter's point: a new process's first CPU point
			// was dropped upstream (cumulativetodelta), and a series must exist before its first
			// increase counts. Its memory (an up-down counter) is there from the first collection and
			// announces nothing.
			zeroed := pmetric.NewResourceMetrics()
			rm.CopyTo(zeroed)
			if zeroCounters(zeroed) > 0 {
				announced[name] = struct{}{}
				zeroed.MoveTo(copies.AppendEmpty())
			}
		}
		attrs.PutStr(k.cfg.Attribute, k.cfg.Other)
	}
	if template != nil {
		// A name with no process now (a cron job between two runs) is announced all the same, so that
		// its next run's first increase counts under its own name instead of going to `other`.
		for name := range k.pending {
			if _, done := announced[name]; done {
				continue
			}
			announce := copies.AppendEmpty()
			template.CopyTo(announce)
			announce.Resource().Attributes().PutStr(k.cfg.Attribute, name)
			announced[name] = struct{}{}
		}
	}
	for name := range announced {
		delete(k.pending, name)
		k.kept[name] = struct{}{}
	}
	copies.MoveAndAppendTo(rms)
	return md, nil
}

// zeroCounters sets every point of every monotonic sum (a counter) in rm to 0, removes the other
// metrics, and returns the number of points left. A non-monotonic sum (process.memory.usage is an
// up-down counter) is a reading, not a count: a zero of it would be a false value, and its point does
// not start a counter's series.
func zeroCounters(rm pmetric.ResourceMetrics) int {
	points := 0
	sms := rm.ScopeMetrics()
	for i := 0; i < sms.Len(); i++ {
		sms.At(i).Metrics().RemoveIf(func(m pmetric.Metric) bool {
			if m.Type() != pmetric.MetricTypeSum || !m.Sum().IsMonotonic() {
				return true
			}
			dps := m.Sum().DataPoints()
			points += dps.Len()
			for j := 0; j < dps.Len(); j++ {
				p := dps.At(j)
				if p.ValueType() == pmetric.NumberDataPointValueTypeInt {
					p.SetIntValue(0)
				} else {
					p.SetDoubleValue(0)
				}
			}
			return false
		})
	}
	return points
}
