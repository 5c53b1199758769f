import type { Change } from "./api/types";

export function percent(ratio: number | null | undefined, digits = 1): string {
  return ratio === null || ratio === undefined ? "–" : `${(ratio * 100).toFixed(digits)} %`;
}

export function when(unixSeconds: number | null | undefined): string {
  if (unixSeconds === null || unixSeconds === undefined) return "–";
  return new Date(unixSeconds * 1000).toLocaleString();
}

export function routeHref(name: string): string {
  return `/routes/${encodeURIComponent(name)}`;
}

/** Whether a change went past a gate with force (the service keeps that in its evidence). */
export function isForced(change: Change): boolean {
  const evidence = change.evidence as Record<string, unknown> | null;
  if (!evidence) return false;
  const gateForced = (key: string) => (evidence[key] as { forced?: unknown } | undefined)?.forced === true;
  return evidence.forced === true || evidence.forced_from_retired === true || gateForced("budget_gate") || gateForced("data_gate");
}
