import { useState } from "react";
import { Link } from "wouter";
import { api } from "../api/client";
import type { Caller, DiffPath, RolloutReport, RouteDiffs } from "../api/types";
import { type Action, ConfirmDialog } from "../components/ConfirmDialog";
import { RouteCharts } from "../components/RouteCharts";
import { Query } from "../components/states";
import { StageBadge } from "../components/StageBadge";
import { isForced, percent, when } from "../format";
import { useDiffs, useRollout } from "../queries";
import { cannotAct } from "../session";

function nextWeight(report: RolloutReport): number | null {
  return report.steps.find((step) => step > report.weight) ?? null;
}

/** What a promote does, in words: the next stage, or the canary's next step. */
export function promoteEffect(report: RolloutReport): string {
  const group = `group ${report.unit}`;
  switch (report.stage) {
    case "legacy":
      return `legacy → shadow: legacy still answers every user; safe requests are copied to new and compared (${group}).`;
    case "shadow":
      return `shadow → canary: 0 % → ${report.steps[0] ?? 1} % of users of ${group} answered by new.`;
    case "canary": {
      const next = nextWeight(report);
      return next === null || next >= 100
        ? `canary → new: ${report.weight} % → 100 % of users of ${group}.`
        : `${report.weight} % → ${next} % of users of ${group}.`;
    }
    case "new":
      return `new → retired: legacy is no longer called for ${group}.`;
    case "retired":
      return "retired is the last stage: the service will refuse.";
  }
}

const FORCE_PROMOTE = "Force it past a closed evidence, data or SLO budget gate (the audit log says it was forced)";

/** What a set weight does, in words, for the weight typed so far. */
export function weightEffect(report: RolloutReport, weight: number): string {
  const group = `group ${report.unit}`;
  if (report.stage !== "canary") return `Only a canary has a weight: ${group} is in stage ${report.stage}; the service will refuse.`;
  if (!Number.isFinite(weight) || weight < 0 || weight > 100) return "A weight is a number from 0 to 100 %.";
  if (weight === report.weight) return `${report.weight} % stays ${weight} % of users of ${group}: nothing changes.`;
  return `${report.weight} % → ${weight} % of users of ${group}.`;
}

function forced(text: string, force: boolean): string {
  return force ? `${text} Forced: the audit entry records it as such.` : text;
}

function actionsFor(name: string, report: RolloutReport): Record<string, Action> {
  const url = `/api/v1/routes/${encodeURIComponent(name)}`;
  const group = `group ${report.unit}`;
  return {
    Promote: {
      title: `Promote ${name}`,
      effect: ({ force }) => forced(promoteEffect(report), force),
      force: { label: FORCE_PROMOTE },
      run: ({ reason, force }) => api(`${url}/promote`, { method: "POST", body: { reason, force } }),
    },
    "Roll back": {
      title: `Roll back ${name}`,
      effect: ({ force }) =>
        forced(`${report.stage} → legacy: every user of ${group} back on legacy, at once.`, force),
      // Only a retired route needs force to come back (legacy must still have its code).
      force: report.stage === "retired" ? { label: "Force it back from retired (audited as forced)" } : undefined,
      run: ({ reason, force }) => api(`${url}/rollback`, { method: "POST", body: { reason, force } }),
    },
    Pause: {
      title: `Pause ${name}`,
      effect: `The analyzer stops moving ${group} (now ${report.stage}${report.stage === "canary" ? ` at ${report.weight} %` : ""}).`,
      run: ({ reason }) => api(`${url}/pause`, { method: "POST", body: { reason } }),
    },
    Resume: {
      title: `Resume ${name}`,
      effect: `The analyzer may move ${group} again.`,
      run: ({ reason }) => api(`${url}/resume`, { method: "POST", body: { reason } }),
    },
    "Set weight": {
      title: `Set the canary weight of ${name}`,
      effect: ({ weight }) => weightEffect(report, weight),
      weight: { initial: nextWeight(report) ?? report.weight },
      run: ({ reason, weight }) => api(`${url}/weight`, { method: "PUT", body: { reason, weight } }),
    },
  };
}

export function RouteDetail({ name, caller }: { name: string; caller: Caller }) {
  const rollout = useRollout(name);
  const diffs = useDiffs(name);
  const [action, setAction] = useState<Action | null>(null);
  const refusal = cannotAct(caller);
  return (
    <>
      <p>
        <Link href="/routes">← Routes</Link>
      </p>
      <h1>Route {name}</h1>
      <Query what="the route" query={rollout}>
        {(report) => (
          <>
            <section aria-labelledby="state-title">
              <h2 id="state-title">Where it stands</h2>
              <dl className="figures">
                <dt>Stage</dt>
                <dd>
                  <StageBadge stage={report.stage} />
                  {report.overridden && ` (the YAML says ${report.yaml_stage})`}
                </dd>
                <dt>Group</dt>
                <dd>{report.unit}</dd>
                {report.stage === "canary" && (
                  <>
                    <dt>Canary weight</dt>
                    <dd>
                      {report.weight} % of users (steps {report.steps.join(", ")})
                    </dd>
                  </>
                )}
                {report.status && (
                  <>
                    <dt>Status</dt>
                    <dd>{report.status}</dd>
                  </>
                )}
                <dt>What blocks the next stage</dt>
                <dd>{report.blocked_by ?? (report.gate?.passed ? "nothing: the evidence gate is open" : "–")}</dd>
              </dl>
              <div className="buttons actions">
                {Object.entries(actionsFor(name, report)).map(([label, act]) => (
                  <button
                    key={label}
                    type="button"
                    disabled={refusal !== null}
                    aria-describedby={refusal ? "why-disabled" : undefined}
                    onClick={() => setAction(act)}
                  >
                    {label}
                  </button>
                ))}
              </div>
              {refusal && (
                <p id="why-disabled" className="note">
                  {refusal}
                </p>
              )}
            </section>
            <Timeline report={report} />
            <Verdicts report={report} />
          </>
        )}
      </Query>
      <RouteCharts name={name} />
      <section aria-labelledby="diffs-title">
        <h2 id="diffs-title">Shadow differences</h2>
        <Query what="shadow differences" query={diffs} isEmpty={(d) => d === null} empty="No shadow results for this route.">
          {(d) => d && <Differences diffs={d} refusal={refusal} onAction={setAction} />}
        </Query>
      </section>
      {action && <ConfirmDialog action={action} onClose={() => setAction(null)} />}
    </>
  );
}

function Timeline({ report }: { report: RolloutReport }) {
  const entries = [...report.audit].sort((a, b) => a.version - b.version);
  return (
    <section aria-labelledby="timeline-title">
      <h2 id="timeline-title">Stage timeline</h2>
      {entries.length === 0 ? (
        <p className="state empty">No change since the YAML: the route is at its configured stage.</p>
      ) : (
        <ol className="timeline">
          {entries.map((entry) => (
            <li key={entry.version}>
              <time>{when(entry.at)}</time> {entry.action}
              {isForced(entry) && <strong className="forced"> (forced)</strong>}: {String(entry.before.stage ?? "–")} →{" "}
              {String(entry.after.stage ?? "–")}
              {typeof entry.after.weight_bp === "number" && ` at ${entry.after.weight_bp / 100} %`} by {entry.actor}
              {entry.reason && <>: “{entry.reason}”</>}
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}

function Verdicts({ report }: { report: RolloutReport }) {
  return (
    <section aria-labelledby="verdicts-title">
      <h2 id="verdicts-title">Analyzer verdicts</h2>
      {report.verdicts.length === 0 ? (
        <p className="state empty">No verdict yet: the analyzer judges a canary once per interval.</p>
      ) : (
        <div className="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">Ended</th>
                <th scope="col">Weight</th>
                <th scope="col">Outcome</th>
                <th scope="col">Action</th>
                <th scope="col">Numbers</th>
              </tr>
            </thead>
            <tbody>
              {report.verdicts.map((verdict) => (
                <tr key={`${verdict.started_at}-${verdict.ended_at}`}>
                  <td>{when(verdict.ended_at)}</td>
                  <td>{verdict.weight_bp === null ? "–" : `${verdict.weight_bp / 100} %`}</td>
                  <td>{verdict.outcome}</td>
                  <td>{verdict.action}</td>
                  <td>
                    <code className="numbers">{JSON.stringify(verdict.verdict)}</code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function reviewAction(route: string, path: DiffPath, verdict: "accepted" | "noise"): Action {
  return {
    title: verdict === "accepted" ? `Accept ${path.rule_path}` : `Mark ${path.rule_path} as noise`,
    effect:
      verdict === "accepted"
        ? `An intended change: the ${path.count} differences at ${path.rule_path} no longer count against the parity.`
        : `Noise: ${path.rule_path} no longer counts against the parity (legacy differed from itself there ${path.noise_count} times).`,
    run: ({ reason }) =>
      api(`/api/v1/diffs/${encodeURIComponent(route)}/reviews`, {
        method: "POST",
        body: { path: path.rule_path, verdict, reason },
      }),
  };
}

function show(value: unknown): string {
  return value === undefined ? "–" : JSON.stringify(value, null, 1);
}

function Differences({
  diffs,
  refusal,
  onAction,
}: {
  diffs: RouteDiffs;
  refusal: string | null;
  onAction: (action: Action) => void;
}) {
  const [selected, setSelected] = useState<string | null>(diffs.paths[0]?.rule_path ?? null);
  const examples = diffs.examples.filter((example) => example.rule_path === selected).slice(0, 3);
  return (
    <>
      <p data-testid="parity">
        Parity {percent(diffs.parity)} over {diffs.compared} comparisons (95 %: {percent(diffs.parity_interval_95[0])} –{" "}
        {percent(diffs.parity_interval_95[1])}); legacy compared with itself {diffs.noise_samples} times.
      </p>
      {diffs.paths.length === 0 ? (
        <p className="state empty">No difference found.</p>
      ) : (
        <div className="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">Path</th>
                <th scope="col">Kind</th>
                <th scope="col">Count</th>
                <th scope="col">Legacy noise</th>
                <th scope="col">Review</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {diffs.paths.map((path) => (
                <tr key={path.rule_path} aria-selected={path.rule_path === selected}>
                  <td>
                    <button type="button" className="link" onClick={() => setSelected(path.rule_path)}>
                      <code>{path.rule_path}</code>
                    </button>
                  </td>
                  <td>{path.kind}</td>
                  <td>{path.count}</td>
                  <td>
                    {path.noise_count}
                    {path.learned_noise && " (learned noise)"}
                  </td>
                  <td>{path.review ? `${path.review} by ${path.reviewed_by ?? "?"}` : "–"}</td>
                  <td className="buttons">
                    <button
                      type="button"
                      disabled={refusal !== null}
                      aria-label={`Accept ${path.rule_path}`}
                      aria-describedby={refusal ? "why-disabled" : undefined}
                      onClick={() => onAction(reviewAction(diffs.route, path, "accepted"))}
                    >
                      Accept
                    </button>
                    <button
                      type="button"
                      disabled={refusal !== null}
                      aria-label={`Noise ${path.rule_path}`}
                      aria-describedby={refusal ? "why-disabled" : undefined}
                      onClick={() => onAction(reviewAction(diffs.route, path, "noise"))}
                    >
                      Noise
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {selected && (
        <>
          <h3>
            Examples of <code>{selected}</code>
          </h3>
          {examples.length === 0 ? (
            <p className="state empty">No stored example of this path.</p>
          ) : (
            examples.map((example, index) => (
              <div key={index} className="example">
                <p>
                  <code>{example.request}</code> at <code>{example.path}</code>
                </p>
                <div className="sides">
                  <figure>
                    <figcaption>legacy</figcaption>
                    <pre>{show(example.primary)}</pre>
                  </figure>
                  <figure>
                    <figcaption>new</figcaption>
                    <pre>{show(example.shadow)}</pre>
                  </figure>
                </div>
              </div>
            ))
          )}
        </>
      )}
    </>
  );
}
