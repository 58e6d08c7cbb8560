package keeplistprocessor

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"
)

// batch holds one process resource per name as hostmetrics makes it: a CPU counter (monotonic sum)
// of 5 and a memory up-down counter (non-monotonic sum) of 7.
func batch(names ...string) pmetric.Metrics {
	md := pmetric.NewMetrics()
	for _, n := range names {
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("process.executable.name", n)
		ms := rm.ScopeMetrics().AppendEmpty().Metrics()
		cpu := ms.AppendEmpty()
		cpu.SetName("process.cpu.time")
		sum := cpu.SetEmptySum()
		sum.SetIsMonotonic(true)
		sum.DataPoints().AppendEmpty().SetDoubleValue(5)
		mem := ms.AppendEmpty()
		mem.SetName("process.memory.usage")
		mem.SetEmptySum().DataPoints().AppendEmpty().SetIntValue(7)
	}
	return md
}

// seen maps each output name to its CPU sum and its number of metrics.
func seen(md pmetric.Metrics) map[string][2]float64 {
	out := map[string][2]float64{}
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		v, _ := rms.At(i).Resource().Attributes().Get("process.executable.name")
		ms := rms.At(i).ScopeMetrics().At(0).Metrics()
		entry := out[v.AsString()]
		entry[0] += ms.At(0).Sum().DataPoints().At(0).DoubleValue()
		entry[1] += float64(ms.Len())
		out[v.AsString()] = entry
	}
	return out
}

func write(t *testing.T, path, text string, at time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

func TestAddedNameIsAnnouncedAtZeroBeforeItsDataMoves(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keep.json")
	start := time.Now()
	write(t, path, `["a"]`, start)
	k := newKeepList(&Config{Path: path, Attribute: "process.executable.name", Other: "other"}, zap.NewNop())

	// First batch: "a" is announced (its data in other, a zero copy under its name).
	out, _ := k.process(context.Background(), batch("a", "b"))
	got := seen(out)
	if got["other"] != [2]float64{10, 4} || got["a"] != [2]float64{0, 1} {
		t.Fatalf("first batch: %v", got)
	}
	out, _ = k.process(context.Background(), batch("a", "b"))
	got = seen(out)
	if got["a"] != [2]float64{5, 2} || got["other"] != [2]float64{5, 2} {
		t.Fatalf("second batch: %v", got)
	}

	// "b" joins, "a" leaves: "a" goes to other at once, "b" is announced first.
	write(t, path, `["b"]`, start.Add(time.Second))
	out, _ = k.process(context.Background(), batch("a", "b"))
	got = seen(out)
	if got["other"] != [2]float64{10, 4} || got["b"] != [2]float64{0, 1} || len(got) != 2 {
		t.Fatalf("after the change: %v", got)
	}
	out, _ = k.process(context.Background(), batch("a", "b"))
	if got = seen(out); got["b"] != [2]float64{5, 2} || got["other"] != [2]float64{5, 2} {
		t.Fatalf("after the announcement: %v", got)
	}
}

func TestANameIsAnnouncedOnlyByAPoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keep.json")
	write(t, path, `["a"]`, time.Now())
	k := newKeepList(&Config{Path: path, Attribute: "process.executable.name", Other: "other"}, zap.NewNop())
	// A new process of "a": cumulativetodelta dropped its first CPU point (and the emptied metric);
	// its memory, an up-down counter, is there and must not announce it.
	empty := batch("a")
	empty.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().RemoveIf(
		func(m pmetric.Metric) bool { return m.Name() == "process.cpu.time" })
	out, _ := k.process(context.Background(), empty)
	if out.ResourceMetrics().Len() != 1 {
		t.Fatalf("announced without a counter's point: %d resources", out.ResourceMetrics().Len())
	}
	if v, _ := out.ResourceMetrics().At(0).Resource().Attributes().Get("process.executable.name"); v.AsString() != "other" {
		t.Fatalf("not announced, its data goes to other; got %q", v.AsString())
	}
	// Its next batch announces it (a zero point), the one after moves its data.
	if got := seen(must(k.process(context.Background(), batch("a")))); got["a"] != [2]float64{0, 1} {
		t.Fatalf("announcement: %v", got)
	}
	if got := seen(must(k.process(context.Background(), batch("a")))); got["a"] != [2]float64{5, 2} {
		t.Fatalf("after it: %v", got)
	}
}

func TestANameWithNoProcessIsAnnouncedFromAnotherResource(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keep.json")
	write(t, path, `["job"]`, time.Now())
	k := newKeepList(&Config{Path: path, Attribute: "process.executable.name", Other: "other"}, zap.NewNop())
	// No process of "job" in this batch: it is announced all the same (a zero copy of "svc").
	got := seen(must(k.process(context.Background(), batch("svc"))))
	if got["job"] != [2]float64{0, 1} || got["other"] != [2]float64{5, 2} || len(got) != 2 {
		t.Fatalf("announcement: %v", got)
	}
	// Its next run's first increase counts under its own name.
	if got = seen(must(k.process(context.Background(), batch("job", "svc")))); got["job"] != [2]float64{5, 2} {
		t.Fatalf("its run: %v", got)
	}
}

func must(md pmetric.Metrics, err error) pmetric.Metrics {
	if err != nil {
		panic(err)
	}
	return md
}

func TestBadFileKeepsTheLastList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keep.json")
	start := time.Now()
	write(t, path, `["a"]`, start)
	k := newKeepList(&Config{Path: path, Attribute: "process.executable.name", Other: "other"}, zap.NewNop())
	k.process(context.Background(), batch("a"))
	write(t, path, `not json`, start.Add(time.Second))
	out, _ := k.process(context.Background(), batch("a"))
	if got := seen(out); got["a"] != [2]float64{5, 2} {
		t.Fatalf("bad file: %v", got)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	out, _ = k.process(context.Background(), batch("a"))
	if got := seen(out); got["a"] != [2]float64{5, 2} {
		t.Fatalf("missing file: %v", got)
	}
}

func TestAReplacedFileOfTheSameSizeAndTimeIsRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keep.json")
	at := time.Now().Truncate(time.Second)
	write(t, path, `["a"]`, at)
	k := newKeepList(&Config{Path: path, Attribute: "process.executable.name", Other: "other"}, zap.NewNop())
	must(k.process(context.Background(), batch("a", "b")))
	// An atomic rewrite (a new file renamed over the old) within the same second, same size.
	next := filepath.Join(dir, "keep.json.tmp")
	write(t, next, `["b"]`, at)
	if err := os.Rename(next, path); err != nil {
		t.Fatal(err)
	}
	if got := seen(must(k.process(context.Background(), batch("a", "b")))); got["b"] != [2]float64{0, 1} || got["other"] != [2]float64{10, 4} {
		t.Fatalf("the rewrite was not read: %v", got)
	}
}
