// A route's answers per side over a window, from GET /api/v1/routes/{name}/series: requests per
// second, error share, p50 and p99, legacy and new on the same axes (and new's answers to shadow
// copies, for a shadowed route).
import { useMemo, useState } from "react";
import type { RouteSeries, SeriesWindow } from "../api/types";
import { useRouteSeries } from "../queries";
import { type Line, SeriesChart } from "./SeriesChart";
import { Query } from "./states";

export const WINDOWS: { value: SeriesWindow; label: string }[] = [
  { value: "1h", label: "Last hour" },
  { value: "24h", label: "Last day" },
  { value: "7d", label: "Last week" },
];

export const LEGACY_COLOR = "#57606a";
export const NEW_COLOR = "#116329";

type Side = RouteSeries["buckets"][number]["legacy"];

export const SHADOW_COLOR = "#6639ba";

function lines(series: RouteSeries, value: (side: Side, seconds: number) => number | null): Line[] {
  const drawn: Line[] = [
    { label: "legacy", color: LEGACY_COLOR, values: series.buckets.map((b) => value(b.legacy, b.seconds)) },
    { label: "new", color: NEW_COLOR, dash: [6, 4], values: series.buckets.map((b) => value(b.new, b.seconds)) },
  ];
  // A shadowed route's new side: what new answered to the copies (no client saw those).
  if (series.buckets.some((b) => b.shadow.requests > 0)) {
    drawn.push({
      label: "new (shadow copies)",
      color: SHADOW_COLOR,
      dash: [2, 3],
      values: series.buckets.map((b) => value(b.shadow, b.seconds)),
    });
  }
  return drawn;
}

/** The share of the route's client answers that came from new, per bucket (a canary's weight
 * at work); shadow copies are not answers any client saw. */
function share(series: RouteSeries): Line[] {
  return [
    {
      label: "answered by new",
      color: NEW_COLOR,
      values: series.buckets.map((b) => {
        const total = b.legacy.requests + b.new.requests;
        return total === 0 ? null : (b.new.requests / total) * 100;
      }),
    },
  ];
}

function Charts({ series }: { series: RouteSeries }) {
  const charts = useMemo(() => {
    const xs = series.buckets.map((b) => b.start);
    return {
      xs,
      share: share(series),
      rate: lines(series, (side, seconds) => side.requests / seconds),
      errors: lines(series, (side) => (side.requests ? (side.errors / side.requests) * 100 : null)),
      p50: lines(series, (side) => side.p50_ms),
      p99: lines(series, (side) => side.p99_ms),
    };
  }, [series]);
  const empty = "No answers in this window.";
  return (
    <div className="charts">
      <SeriesChart title="Share answered by new" xs={charts.xs} lines={charts.share} unit="%" empty="No answers from new in this window." />
      <SeriesChart title="Requests per second" xs={charts.xs} lines={charts.rate} unit="req/s" empty={empty} />
      <SeriesChart title="Errors (5xx)" xs={charts.xs} lines={charts.errors} unit="%" empty="No errors in this window." />
      <SeriesChart title="Latency p50" xs={charts.xs} lines={charts.p50} unit="ms" empty={empty} />
      <SeriesChart title="Latency p99" xs={charts.xs} lines={charts.p99} unit="ms" empty={empty} />
    </div>
  );
}

export function WindowPicker({
  value,
  onChange,
  id,
}: {
  value: SeriesWindow;
  onChange: (value: SeriesWindow) => void;
  id: string;
}) {
  return (
    <div className="windows">
      <label className="inline" htmlFor={id}>
        Window
      </label>
      <select id={id} value={value} onChange={(event) => onChange(event.target.value as SeriesWindow)}>
        {WINDOWS.map((w) => (
          <option key={w.value} value={w.value}>
            {w.label}
          </option>
        ))}
      </select>
    </div>
  );
}

export function RouteCharts({ name }: { name: string }) {
  const [span, setSpan] = useState<SeriesWindow>("1h");
  const series = useRouteSeries(name, span);
  return (
    <section aria-labelledby="traffic-title">
      <h2 id="traffic-title">Traffic, legacy and new</h2>
      <WindowPicker id="traffic-window" value={span} onChange={setSpan} />
      <Query
        what="the traffic series"
        query={series}
        isEmpty={(s) => s.buckets.every((b) => b.legacy.requests + b.new.requests + b.shadow.requests === 0)}
        empty="No answers to this route in this window."
      >
        {(s) => <Charts series={s} />}
      </Query>
    </section>
  );
}
