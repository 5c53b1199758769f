// The migration's burndown: the share of all answers that came from new, over the last day and
// the last week, from GET /api/v1/progress/series.
import { useMemo } from "react";
import type { ProgressSeries, SeriesWindow } from "../api/types";
import { useProgressSeries } from "../queries";
import { NEW_COLOR } from "./RouteCharts";
import { SeriesChart } from "./SeriesChart";
import { Query } from "./states";

function ShareChart({ series, title }: { series: ProgressSeries; title: string }) {
  const chart = useMemo(
    () => ({
      xs: series.buckets.map((b) => b.start),
      lines: [
        {
          label: "answered by new",
          color: NEW_COLOR,
          values: series.buckets.map((b) => (b.ratio === null ? null : b.ratio * 100)),
        },
      ],
    }),
    [series],
  );
  return <SeriesChart title={title} xs={chart.xs} lines={chart.lines} unit="%" empty="Nothing answered by new yet." />;
}

function Share({ span, title }: { span: SeriesWindow; title: string }) {
  const series = useProgressSeries(span);
  return (
    <Query
      what={`the share on new (${title.toLowerCase()})`}
      query={series}
      isEmpty={(s) => s.buckets.every((b) => b.ratio === null)}
      empty={`No traffic: ${title.toLowerCase()}.`}
    >
      {(s) => <ShareChart series={s} title={title} />}
    </Query>
  );
}

export function Burndown() {
  return (
    <section aria-labelledby="burndown-title">
      <h2 id="burndown-title">Share answered by new, over time</h2>
      <div className="charts">
        <Share span="24h" title="Last day" />
        <Share span="7d" title="Last week" />
      </div>
    </section>
  );
}
