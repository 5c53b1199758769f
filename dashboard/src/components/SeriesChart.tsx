// One time series chart (uPlot): a few lines over the same buckets, with its empty state.
// uPlot is loaded on first use (its own chunk): the screens without charts don't pay for it,
// and it never runs where there is nothing to draw.
import { useEffect, useId, useRef } from "react";
import type uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { Empty } from "./states";

export interface Line {
  label: string;
  values: (number | null)[];
  color: string;
  /** Dashed lines tell the sides apart without relying on colour. */
  dash?: number[];
}

const HEIGHT_PX = 180;

// One import for every chart on the page.
let uPlotClass: Promise<typeof uPlot> | null = null;
const loadUPlot = () => (uPlotClass ??= import("uplot").then((module) => module.default));

function hasPoints(lines: Line[]): boolean {
  return lines.some((line) => line.values.some((v) => v !== null && v !== 0));
}

/** In words, for screen readers: each line's latest and highest value. */
function summary(title: string, lines: Line[], unit: string): string {
  const parts = lines.map((line) => {
    const values = line.values.filter((v): v is number => v !== null);
    if (values.length === 0) return `${line.label}: no data`;
    const last = values[values.length - 1] ?? 0;
    return `${line.label}: latest ${last.toPrecision(3)} ${unit}, highest ${Math.max(...values).toPrecision(3)} ${unit}`;
  });
  return `${title}. ${parts.join("; ")}`;
}

export function SeriesChart({
  title,
  xs,
  lines,
  unit,
  empty,
}: {
  title: string;
  /** Bucket starts, unix seconds. */
  xs: number[];
  lines: Line[];
  unit: string;
  empty: string;
}) {
  const target = useRef<HTMLDivElement>(null);
  const captionId = useId();
  const isEmpty = !hasPoints(lines);

  useEffect(() => {
    const element = target.current;
    if (isEmpty || element === null) return;
    let chart: uPlot | null = null;
    let observer: ResizeObserver | null = null;
    let isCancelled = false;
    void loadUPlot().then((UPlot) => {
      if (isCancelled) return;
      const options: uPlot.Options = {
        width: element.clientWidth || 400,
        height: HEIGHT_PX,
        scales: { x: { time: true } },
        axes: [{}, { label: unit, size: 60 }],
        series: [
          {},
          ...lines.map((line) => ({
            label: line.label,
            stroke: line.color,
            width: 2,
            dash: line.dash,
            points: { show: false },
          })),
        ],
      };
      const data: uPlot.AlignedData = [xs, ...lines.map((line) => line.values)];
      chart = new UPlot(options, data, element);
      if (typeof ResizeObserver !== "undefined") {
        observer = new ResizeObserver(() => {
          chart?.setSize({ width: element.clientWidth || 400, height: HEIGHT_PX });
        });
        observer.observe(element);
      }
    });
    return () => {
      isCancelled = true;
      observer?.disconnect();
      chart?.destroy();
    };
  }, [isEmpty, xs, lines, unit]);

  return (
    <figure className="chart" aria-labelledby={captionId}>
      <figcaption id={captionId}>{title}</figcaption>
      {isEmpty ? (
        <Empty>{empty}</Empty>
      ) : (
        <div ref={target} role="img" aria-label={summary(title, lines, unit)} data-testid="chart" />
      )}
    </figure>
  );
}
