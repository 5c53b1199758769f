import { fireEvent, screen } from "@testing-library/react";
import { http, HttpResponse } from "msw";
import { describe, expect, it } from "vitest";
import type { Caller, RouteRow } from "../api/types";
import { renderWithQueries } from "../test/render";
import { server } from "../test/server";
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
