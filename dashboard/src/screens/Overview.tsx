import { Link } from "wouter";
import { STAGES, type Share } from "../api/types";
import { Burndown } from "../components/Burndown";
import { Query } from "../components/states";
import { StageBadge } from "../components/StageBadge";
import { percent, routeHref, when } from "../format";
import { useAlerts, useAudit, useProgress, useRoutes } from "../queries";

function shareText(share: Share): string {
  return share.total === 0 ? "no traffic" : `${percent(share.ratio)} (${share.new} of ${share.total})`;
}

export function Overview() {
  const progress = useProgress();
  const routes = useRoutes();
  const alerts = useAlerts();
  const audit = useAudit(undefined, 10);
  return (
    <>
      <h1>Migration overview</h1>
      <section aria-labelledby="stages-title">
        <h2 id="stages-title">Routes by stage</h2>
        <Query what="progress" query={progress} isEmpty={(p) => p.routes.length === 0} empty="No routes configured.">
          {(p) => {
            const total = p.routes.length;
            return (
              <>
                <div className="stagebar" role="img" aria-label={STAGES.map((s) => `${p.routes_by_stage[s] ?? 0} ${s}`).join(", ")}>
                  {STAGES.filter((s) => (p.routes_by_stage[s] ?? 0) > 0).map((s) => (
                    <span
                      key={s}
                      className={`stage-${s}`}
                      style={{ width: `${((p.routes_by_stage[s] ?? 0) / total) * 100}%` }}
                    />
                  ))}
                </div>
                <ul className="legend">
                  {STAGES.map((s) => (
                    <li key={s}>
                      <StageBadge stage={s} /> {p.routes_by_stage[s] ?? 0}
                    </li>
                  ))}
                </ul>
                <h2>Answered by new</h2>
                <dl className="figures">
                  <dt>Last hour</dt>
                  <dd>{shareText(p.share_on_new.hour)}</dd>
                  <dt>Last day</dt>
                  <dd>{shareText(p.share_on_new.day)}</dd>
                </dl>
              </>
            );
          }}
        </Query>
      </section>
      <Burndown />
      <section aria-labelledby="rollouts-title">
        <h2 id="rollouts-title">Active rollouts</h2>
        <Query
          what="rollouts"
          query={routes}
          isEmpty={(r) => !r.routes.some((row) => row.stage === "canary")}
          empty="No canary is running."
        >
          {(r) => (
            <ul>
              {r.routes
                .filter((row) => row.stage === "canary")
                .map((row) => (
                  <li key={row.route}>
                    <Link href={routeHref(row.route)}>{row.route}</Link>: {row.weight ?? 0} % of users on new
                    {row.status ? ` (${row.status})` : ""}
                  </li>
                ))}
            </ul>
          )}
        </Query>
      </section>
      <section aria-labelledby="alerts-title">
        <h2 id="alerts-title">Firing alerts</h2>
        <Query what="alerts" query={alerts} isEmpty={(a) => a.alerts.length === 0} empty="No alert is firing.">
          {(a) => (
            <ul>
              {a.alerts.map((alert) => (
                <li key={`${alert.slo}-${alert.severity}-${alert.long_s}`} className="alert">
                  <strong>{alert.severity}</strong> {alert.slo}: burning {alert.burn_long.toFixed(1)}× over{" "}
                  {alert.long_s} s (threshold {alert.burn}×), since {when(alert.fired_at)}
                </li>
              ))}
            </ul>
          )}
        </Query>
      </section>
      <section aria-labelledby="audit-title">
        <h2 id="audit-title">Last changes</h2>
        <Query what="audit entries" query={audit} isEmpty={(a) => a.length === 0} empty="Nothing changed yet.">
          {(entries) => (
            <ul>
              {entries.map((entry) => (
                <li key={entry.version}>
                  {when(entry.at)} <Link href={routeHref(entry.unit)}>{entry.unit}</Link> {entry.action} by{" "}
                  {entry.actor}: {entry.reason}
                </li>
              ))}
            </ul>
          )}
        </Query>
      </section>
    </>
  );
}
