import { screen } from "@testing-library/react";
import { http, HttpResponse } from "msw";
import { describe, expect, it, vi } from "vitest";
import type { RouteSeries } from "../api/types";
import { renderWithQueries } from "../test/render";
import { server } from "../test/server";
import { RouteCharts } from "./RouteCharts";
import { SeriesChart } from "./SeriesChart";

// jsdom has neither canvas nor matchMedia, which uPlot needs: a stand-in records what it was
// given (the chart's drawing is checked in a real browser, tests/e2e/test_dashboard.py).
const drawn = vi.hoisted(() => [] as { series: number; points: number }[]);
vi.mock("uplot", () => ({
  default: class {
    constructor(options: { series: unknown[] }, data: unknown[][]) {
      drawn.push({ series: options.series.length - 1, points: data[0]?.length ?? 0 });
    }
    setSize() {}
    destroy() {}
  },
}));

type Side = RouteSeries["buckets"][number]["legacy"];
const quiet: Side = { requests: 0, errors: 0, p50_ms: null, p99_ms: null };
const bucket = (start: number, legacy: Side = quiet, fresh: Side = quiet, shadow: Side = quiet) => ({
  start,
  seconds: 60,
  legacy,
  new: fresh,
  shadow,
});

describe("the series chart", () => {
  it("shows its empty state, and no chart, when every value is null or zero", () => {
    renderWithQueries(
      <SeriesChart
        title="Latency p99"
        xs={[0, 60]}
        lines={[{ label: "legacy", color: "#000", values: [null, 0] }]}
        unit="ms"
        empty="No answers in this window."
      />,
    );
    expect(screen.getByText("Latency p99")).toBeTruthy();
    expect(screen.getByText("No answers in this window.")).toBeTruthy();
    expect(screen.queryByTestId("chart")).toBeNull();
  });

  it("says a route without answers in the window has none, with no empty axes", async () => {
    const series: RouteSeries = { route: "tasks", window: "1h", bucket_s: 60, buckets: [bucket(0), bucket(60)] };
    server.use(http.get("/api/v1/routes/tasks/series", () => HttpResponse.json(series)));
    renderWithQueries(<RouteCharts name="tasks" />);
    expect(await screen.findByText("No answers to this route in this window.")).toBeTruthy();
    expect(screen.queryByTestId("chart")).toBeNull();
  });

  it("draws a chart per figure when there are answers, and describes it in words", async () => {
    const answered = { requests: 120, errors: 6, p50_ms: 4.2, p99_ms: 30.5 };
    const series: RouteSeries = {
      route: "tasks",
      window: "1h",
      bucket_s: 60,
      buckets: [bucket(0), bucket(60, answered)],
    };
    server.use(http.get("/api/v1/routes/tasks/series", () => HttpResponse.json(series)));
    renderWithQueries(<RouteCharts name="tasks" />);
    const charts = await screen.findAllByTestId("chart");
    expect(charts).toHaveLength(4);
    await vi.waitFor(() => expect(drawn).toHaveLength(4));
    expect(drawn.every((chart) => chart.series === 2 && chart.points === 2)).toBe(true);
    expect(charts[0]?.getAttribute("aria-label")).toBe(
      "Requests per second. legacy: latest 2.00 req/s, highest 2.00 req/s; new: latest 0.00 req/s, highest 0.00 req/s",
    );
  });

  it("adds new's answers to shadow copies as a third line when there are some", async () => {
    const answered = { requests: 60, errors: 0, p50_ms: 4.2, p99_ms: 30.5 };
    const series: RouteSeries = {
      route: "tasks",
      window: "1h",
      bucket_s: 60,
      buckets: [bucket(0), bucket(60, answered, quiet, answered)],
    };
    server.use(http.get("/api/v1/routes/tasks/series", () => HttpResponse.json(series)));
    drawn.length = 0;
    renderWithQueries(<RouteCharts name="tasks" />);
    const p50 = await screen.findByRole("img", { name: /^Latency p50/ });
    expect(p50.getAttribute("aria-label")).toContain("new (shadow copies): latest 4.20 ms");
    // No errors on any side: that chart says so instead of drawing.
    expect(screen.getByText("No errors in this window.")).toBeTruthy();
    await vi.waitFor(() => expect(drawn).toHaveLength(3));
    expect(drawn.every((chart) => chart.series === 3)).toBe(true);
  });

  it("draws a canary's share on new per bucket, from the answers of both sides", async () => {
    const side = (requests: number) => ({ requests, errors: 0, p50_ms: 4.2, p99_ms: 30.5 });
    const series: RouteSeries = {
      route: "tasks",
      window: "1h",
      bucket_s: 60,
      // 10 % on new, then 50 % (the weight was set), then a bucket without answers.
      buckets: [bucket(0, side(90), side(10)), bucket(60, side(30), side(30)), bucket(120)],
    };
    server.use(http.get("/api/v1/routes/tasks/series", () => HttpResponse.json(series)));
    drawn.length = 0;
    renderWithQueries(<RouteCharts name="tasks" />);
    const shared = await screen.findByRole("img", { name: /^Share answered by new/ });
    expect(shared.getAttribute("aria-label")).toBe(
      "Share answered by new. answered by new: latest 50.0 %, highest 50.0 %",
    );
    expect(await screen.findAllByTestId("chart")).toHaveLength(4); // no errors: that one says so
    await vi.waitFor(() => expect(drawn).toHaveLength(4));
    expect(drawn[0]).toEqual({ series: 1, points: 3 });
  });

  it("shows the API's refusal", async () => {
    server.use(
      http.get("/api/v1/routes/tasks/series", () => HttpResponse.json({ detail: "store unavailable" }, { status: 503 })),
    );
    renderWithQueries(<RouteCharts name="tasks" />);
    expect((await screen.findByRole("alert")).textContent).toBe("Could not load the traffic series: store unavailable");
  });
});
