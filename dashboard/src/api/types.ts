// Types of the admin API. Request bodies and the documented answers come from the generated
// schema (schema.ts, from /openapi.json: tests/integration/test_dashboard_types.py fails when it
// drifts). The reports the API documents only as JSON objects (routes, progress, diffs: the same
// documents the CLI prints with --json) are described here, by the fields the screens read.
import type { components } from "./schema";

type Schemas = components["schemas"];
export type Caller = Schemas["Caller"];
export type SessionCreated = Schemas["SessionCreated"];
export type Change = Schemas["ChangeOut"];
export type PromoteBody = Schemas["PromoteBody"];
export type ChangeBody = Schemas["ChangeBody"];
export type WeightBody = Schemas["WeightBody"];
export type ReviewBody = Schemas["ReviewBody"];
export type AlertRow = Schemas["AlertRowOut"];
export type RouteSeries = Schemas["RouteSeries"];
export type ProgressSeries = Schemas["ProgressSeries"];
export type SeriesWindow = RouteSeries["window"];
export type Identity = Schemas["IdentityOut"];
export type SigningKey = Schemas["SigningKeyOut"];

export const STAGES = ["legacy", "shadow", "canary", "new", "retired"] as const;
export type Stage = (typeof STAGES)[number];

export interface Share {
  new: number;
  total: number;
  ratio: number | null;
}

export interface ProgressRoute {
  route: string;
  stage: Stage;
  parity: number | null;
  parity_lower_bound_95: number | null;
  compared: number;
  next_step: string;
}

export interface Progress {
  routes_by_stage: Partial<Record<Stage, number>>;
  share_on_new: { hour: Share; day: Share };
  routes: ProgressRoute[];
}

export interface Verdict {
  unit: string;
  started_at: number;
  ended_at: number;
  weight_bp: number | null;
  outcome: string;
  action: string;
  verdict: Record<string, unknown>;
}

export interface RouteRow {
  route: string;
  unit: string;
  stage: Stage;
  yaml_stage: Stage;
  overridden: boolean;
  weight: number | null;
  status: string;
  share_new_hour: number | null;
  answers_hour: number;
  parity: number | null;
  parity_low: number | null;
  compared: number;
  last_verdict: Verdict | null;
}

export interface RouteList {
  state_version: number;
  routes: RouteRow[];
}

export interface Gate {
  passed: boolean;
  reason: string;
  compared: number;
  lower_bound: number | null;
  needed: number | null;
}

export interface RolloutReport {
  unit: string;
  routes: string[];
  yaml_stage: Stage;
  stage: Stage;
  weight: number;
  steps: number[];
  status: string;
  overridden: boolean;
  plan: { steps: number[]; interval_s: number; auto: boolean } | null;
  gate: Gate | null;
  blocked_by: string | null;
  verdicts: Verdict[];
  audit: Change[];
}

export interface DiffPath {
  rule_path: string;
  kind: string;
  count: number;
  noise_count: number;
  review: "accepted" | "noise" | null;
  review_reason: string | null;
  reviewed_by: string | null;
  learned_noise: boolean;
}

export interface DiffExample {
  request: string;
  path: string;
  primary: unknown;
  shadow: unknown;
  rule_path: string;
}

export interface RouteDiffs {
  route: string;
  compared: number;
  equal: number;
  different: number;
  noise_samples: number;
  parity: number | null;
  parity_interval_95: [number, number];
  paths: DiffPath[];
  examples: DiffExample[];
}
