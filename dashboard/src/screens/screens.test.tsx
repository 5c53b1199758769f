import { fireEvent, screen } from "@testing-library/react";
import { http, HttpResponse } from "msw";
import { describe, expect, it, vi } from "vitest";
import type { AlertRow, Caller, Change, RouteRow } from "../api/types";
import { renderWithQueries } from "../test/render";
import { server } from "../test/server";
import { Audit } from "./Audit";
import { Overview } from "./Overview";
import { RouteDetail } from "./RouteDetail";
import { Routes } from "./Routes";

const row = (route: string, stage: RouteRow["stage"], unit = route): RouteRow => ({
  route,
  unit,
  stage,
  yaml_stage: stage,
  overridden: false,
  weight: stage === "canary" ? 25 : null,
  status: "",
  share_new_hour: null,
  answers_hour: 0,
  parity: null,
  parity_low: null,
  compared: 0,
  last_verdict: null,
});

const routes = [row("projects.index", "legacy"), row("projects.show", "canary", "projects"), row("tasks", "shadow")];
const progress = {
  routes_by_stage: {},
  share_on_new: { hour: { new: 0, total: 0, ratio: null }, day: { new: 0, total: 0, ratio: null } },
  routes: routes.map((r) => ({ route: r.route, stage: r.stage, parity: null, parity_lower_bound_95: null, compared: 0, next_step: `gate of ${r.route}` })),
};

const report = {
  unit: "projects",
  routes: ["projects.show"],
  yaml_stage: "canary",
  stage: "canary",
  weight: 25,
  steps: [1, 5, 25, 50, 100],
  status: "running",
  overridden: false,
  plan: null,
  gate: null,
  blocked_by: null,
  verdicts: [],
  audit: [],
};

const write: Caller = { subject: "user:ana", scope: "write", via: "session", expires_at: null, csrf_token: "t" };
const read: Caller = { ...write, subject: "token:viewer", scope: "read" };

describe("the routes table", () => {
  it("lists every route with what blocks it, and filters by stage and text", async () => {
    server.use(
      http.get("/api/v1/routes", () => HttpResponse.json({ state_version: 1, routes })),
      http.get("/api/v1/progress", () => HttpResponse.json(progress)),
    );
    renderWithQueries(<Routes />);
    expect(await screen.findByText("gate of tasks")).toBeTruthy();
    expect(document.querySelectorAll("tbody tr")).toHaveLength(3);
    fireEvent.change(screen.getByLabelText("Stage"), { target: { value: "canary" } });
    expect(document.querySelectorAll("tbody tr")).toHaveLength(1);
    fireEvent.change(screen.getByLabelText("Stage"), { target: { value: "" } });
    fireEvent.change(screen.getByLabelText("Search"), { target: { value: "tasks" } });
    expect(document.querySelectorAll("tbody tr")).toHaveLength(1);
  });

  it("says so when the API fails", async () => {
    server.use(
      http.get("/api/v1/routes", () =>
        HttpResponse.json({ detail: "the control store can't be reached" }, { status: 503 }),
      ),
      http.get("/api/v1/progress", () => HttpResponse.json(progress)),
    );
    renderWithQueries(<Routes />);
    expect((await screen.findByRole("alert")).textContent).toContain("the control store can't be reached");
  });
});

describe("the route page", () => {
  const handlers = [
    http.get("/api/v1/routes/projects.show", () => HttpResponse.json(report)),
    http.get("/api/v1/diffs/projects.show", () => HttpResponse.json({ detail: "none" }, { status: 404 })),
    http.get("/api/v1/routes/projects.show/series", () =>
      HttpResponse.json({ route: "projects.show", window: "1h", bucket_s: 60, buckets: [] }),
    ),
  ];

  it("confirms a promote with what it will do, and shows the service's refusal", async () => {
    server.use(
      ...handlers,
      http.post("/api/v1/routes/projects.show/promote", () =>
        HttpResponse.json({ detail: "projects stays at 25 %: the SLO budget gate is closed" }, { status: 409 }),
      ),
    );
    renderWithQueries(<RouteDetail name="projects.show" caller={write} />);
    fireEvent.click(await screen.findByRole("button", { name: "Promote" }));
    expect(screen.getByText("25 % → 50 % of users of group projects.")).toBeTruthy();
    fireEvent.change(screen.getByLabelText(/Reason/), { target: { value: "looks good" } });
    // jsdom has no showModal: the dialog stays closed there, so its contents count as hidden.
    fireEvent.click(screen.getByRole("button", { name: "Confirm", hidden: true }));
    expect((await screen.findByRole("alert", { hidden: true })).textContent).toBe(
      "Refused: projects stays at 25 %: the SLO budget gate is closed",
    );
  });

  it("disables every action for a read token, saying why", async () => {
    server.use(...handlers);
    renderWithQueries(<RouteDetail name="projects.show" caller={read} />);
    const promote = await screen.findByRole("button", { name: "Promote" });
    expect((promote as HTMLButtonElement).disabled).toBe(true);
    expect(screen.getByText("token:viewer has scope read: changes need scope write")).toBeTruthy();
  });
});

const DATA_GATE =
  "table projects (read or written by projects.show): its last diff, 12 min ago, found 3 different; run `strangler data diff projects`";

describe("what blocks the next stage", () => {
  it("names the data gate in the routes table when a data: table blocks a canary", async () => {
    const blocked = {
      ...progress,
      routes: progress.routes.map((r) =>
        r.route === "projects.show"
          ? { ...r, next_step: `canary at 25 % (group projects), 0 errors in 0 answers from new in the last hour; see \`strangler rollout status ROUTE\` for its verdicts; new is blocked by the data gate: ${DATA_GATE}` }
          : r,
      ),
    };
    server.use(
      http.get("/api/v1/routes", () => HttpResponse.json({ state_version: 1, routes })),
      http.get("/api/v1/progress", () => HttpResponse.json(blocked)),
    );
    renderWithQueries(<Routes />);
    const cell = await screen.findByText(/new is blocked by the data gate/);
    expect(cell.closest("tr")?.getAttribute("data-route")).toBe("projects.show");
    expect(cell.textContent).toContain(DATA_GATE);
  });

  it("names it on the route page", async () => {
    server.use(
      http.get("/api/v1/routes/projects.show", () =>
        HttpResponse.json({ ...report, blocked_by: `the data gate (for new): ${DATA_GATE}` }),
      ),
      http.get("/api/v1/diffs/projects.show", () => HttpResponse.json({ detail: "none" }, { status: 404 })),
      http.get("/api/v1/routes/projects.show/series", () =>
        HttpResponse.json({ route: "projects.show", window: "1h", bucket_s: 60, buckets: [] }),
      ),
    );
    renderWithQueries(<RouteDetail name="projects.show" caller={write} />);
    expect(await screen.findByText(`the data gate (for new): ${DATA_GATE}`)).toBeTruthy();
  });
});

describe("the overview", () => {
  const alert: AlertRow = {
    slo: "projects-show-new",
    severity: "page",
    burn: 14.4,
    long_s: 3600,
    short_s: 300,
    state: "firing",
    burn_long: 20.5,
    burn_short: 31,
    fired_at: 1_700_000_000,
    fired_with: null,
    resolved_at: null,
    low_traffic: false,
  };
  const share = { window: "24h", bucket_s: 900, buckets: [] };

  function serve(alerts: AlertRow[]) {
    server.use(
      http.get("/api/v1/progress", () => HttpResponse.json(progress)),
      http.get("/api/v1/routes", () => HttpResponse.json({ state_version: 1, routes })),
      http.get("/api/v1/alerts", () => HttpResponse.json({ alerts })),
      http.get("/api/v1/audit", () => HttpResponse.json([])),
      http.get("/api/v1/progress/series", () => HttpResponse.json(share)),
    );
  }

  it("shows the firing SLO alerts", async () => {
    serve([alert]);
    renderWithQueries(<Overview />);
    const shown = await screen.findByText(/projects-show-new: burning 20\.5× over 3600 s/);
    expect(shown.closest("li")?.textContent).toMatch(/^page projects-show-new: burning 20\.5× over 3600 s \(threshold 14\.4×\), since /);
  });

  it("says so when no alert is firing", async () => {
    serve([]);
    renderWithQueries(<Overview />);
    expect(await screen.findByText("No alert is firing.")).toBeTruthy();
  });
});

describe("the actions", () => {
  const handlers = [
    http.get("/api/v1/routes/projects.show", () => HttpResponse.json(report)),
    http.get("/api/v1/diffs/projects.show", () => HttpResponse.json({ detail: "none" }, { status: 404 })),
    http.get("/api/v1/routes/projects.show/series", () =>
      HttpResponse.json({ route: "projects.show", window: "1h", bucket_s: 60, buckets: [] }),
    ),
  ];

  it("says what a weight will do as it is typed, and sends it with the reason", async () => {
    let sent: unknown = null;
    server.use(
      ...handlers,
      http.put("/api/v1/routes/projects.show/weight", async ({ request }) => {
        sent = await request.json();
        return HttpResponse.json({});
      }),
    );
    renderWithQueries(<RouteDetail name="projects.show" caller={write} />);
    fireEvent.click(await screen.findByRole("button", { name: "Set weight" }));
    expect(screen.getByText("25 % → 50 % of users of group projects.")).toBeTruthy();
    fireEvent.change(screen.getByLabelText(/New weight/), { target: { value: "40" } });
    expect(screen.getByText("25 % → 40 % of users of group projects.")).toBeTruthy();
    fireEvent.change(screen.getByLabelText(/Reason/), { target: { value: "more users" } });
    fireEvent.click(screen.getByRole("button", { name: "Confirm", hidden: true }));
    await vi.waitFor(() => expect(sent).toEqual({ reason: "more users", weight: 40 }));
  });

  it("offers force on a promote, says it is audited, and sends it", async () => {
    let sent: unknown = null;
    server.use(
      ...handlers,
      http.post("/api/v1/routes/projects.show/promote", async ({ request }) => {
        sent = await request.json();
        return HttpResponse.json({});
      }),
    );
    renderWithQueries(<RouteDetail name="projects.show" caller={write} />);
    fireEvent.click(await screen.findByRole("button", { name: "Promote" }));
    fireEvent.click(screen.getByLabelText(/Force it past a closed evidence, data or SLO budget gate/));
    expect(screen.getByText(/Forced: the audit entry records it as such\./)).toBeTruthy();
    fireEvent.change(screen.getByLabelText(/Reason/), { target: { value: "hotfix" } });
    fireEvent.click(screen.getByRole("button", { name: "Confirm", hidden: true }));
    await vi.waitFor(() => expect(sent).toEqual({ reason: "hotfix", force: true }));
  });
});

describe("the audit log", () => {
  const change = (version: number, evidence: Change["evidence"]): Change => ({
    version,
    at: 1_700_000_000 + version,
    actor: "user:ana",
    action: "promote",
    unit: "projects",
    before: { stage: "shadow" },
    after: { stage: "canary" },
    reason: `change ${version}`,
    evidence,
  });

  it("marks the changes that were forced past a gate", async () => {
    server.use(
      http.get("/api/v1/audit", () =>
        HttpResponse.json([
          change(2, { gate: { passed: false }, forced: true }),
          change(1, { gate: { passed: true }, forced: false }),
        ]),
      ),
      http.get("/api/v1/routes", () => HttpResponse.json({ state_version: 1, routes })),
    );
    renderWithQueries(<Audit />);
    const forced = await screen.findByText("change 2");
    expect(forced.closest("tr")?.textContent).toContain("promote (forced)");
    expect(screen.getByText("change 1").closest("tr")?.textContent).not.toContain("forced");
  });
});
