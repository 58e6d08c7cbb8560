// Number, time and money formatting shared by the views.

const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

/** Seconds since the epoch from an ISO string or a number of seconds. */
export function seconds(ts) {
  if (ts === null || ts === undefined || ts === "") return null;
  if (typeof ts === "number") return ts;
  const ms = Date.parse(ts);
  return Number.isNaN(ms) ? null : ms / 1000;
}

export function num(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return new Intl.NumberFormat(undefined, { maximumFractionDigits: digits }).format(value);
}

export function pct(value, digits = 1) {
  return value === null || value === undefined ? "—" : `${num(value, digits)} %`;
}

export function money(value) {
  if (value === null || value === undefined) return "—";
  return new Intl.NumberFormat(undefined, { style: "currency", currency: "USD", maximumFractionDigits: 2 })
    .format(value);
}

export function bytes(value) {
  if (value === null || value === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(value);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${nf.format(v)} ${units[i]}`;
}

export function duration(totalSeconds) {
  if (totalSeconds === null || totalSeconds === undefined) return "—";
  const s = Math.round(totalSeconds);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

/** "12s ago" for a timestamp, relative to now. */
export function ago(ts) {
  const t = seconds(ts);
  if (t === null) return "never";
  const delta = Math.max(0, Date.now() / 1000 - t);
  return `${duration(delta)} ago`;
}

export function datetime(ts) {
  const t = seconds(ts);
  if (t === null) return "—";
  return new Date(t * 1000).toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

/** A <time> element showing a relative time, with the absolute one as its tooltip. */
export function timeAgo(h, ts) {
  const t = seconds(ts);
  if (t === null) return "—";
  return h("time", { datetime: new Date(t * 1000).toISOString(), title: datetime(ts) }, ago(ts));
}

export function phaseLabel(phase) {
  return (phase || "").replace("_", " ");
}
