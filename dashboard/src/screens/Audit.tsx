import { useMemo, useState } from "react";
import { Link } from "wouter";
import { Query } from "../components/states";
import { isForced, routeHref, when } from "../format";
import { useAudit, useRoutes } from "../queries";

export function Audit() {
  const [unit, setUnit] = useState("");
  const [actor, setActor] = useState("");
  const [since, setSince] = useState("");
  const audit = useAudit(unit || undefined, 1000);
  const routes = useRoutes();
  const names = useMemo(
    () => [...new Set((routes.data?.routes ?? []).flatMap((row) => [row.route, row.unit]))].sort(),
    [routes.data],
  );
  const sinceS = since ? new Date(since).getTime() / 1000 : null;
  return (
    <>
      <h1>Audit log</h1>
      <div className="filters">
        <label>
          Route
          <select value={unit} onChange={(event) => setUnit(event.target.value)}>
            <option value="">every route</option>
            {names.map((name) => (
              <option key={name}>{name}</option>
            ))}
          </select>
        </label>
        <label>
          Actor
          <input value={actor} placeholder="token:ci, user:ana, analyzer…" onChange={(event) => setActor(event.target.value)} />
        </label>
        <label>
          Since
          <input type="datetime-local" value={since} onChange={(event) => setSince(event.target.value)} />
        </label>
      </div>
      <Query what="the audit log" query={audit} isEmpty={(entries) => entries.length === 0} empty="Nothing changed yet.">
        {(entries) => {
          const shown = entries.filter(
            (entry) => entry.actor.includes(actor) && (sinceS === null || entry.at >= sinceS),
          );
          if (shown.length === 0) return <p className="state empty">No entry matches these filters.</p>;
          return (
            <div className="scroll">
              <table>
                <thead>
                  <tr>
                    <th scope="col">When</th>
                    <th scope="col">Route</th>
                    <th scope="col">Action</th>
                    <th scope="col">Change</th>
                    <th scope="col">Actor</th>
                    <th scope="col">Reason</th>
                  </tr>
                </thead>
                <tbody>
                  {shown.map((entry) => (
                    <tr key={entry.version}>
                      <td>{when(entry.at)}</td>
                      <td>
                        <Link href={routeHref(entry.unit)}>{entry.unit}</Link>
                      </td>
                      <td>
                        {entry.action}
                        {isForced(entry) && <strong className="forced"> (forced)</strong>}
                      </td>
                      <td>
                        {String(entry.before.stage ?? "–")} → {String(entry.after.stage ?? "–")}
                      </td>
                      <td>{entry.actor}</td>
                      <td>{entry.reason}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          );
        }}
      </Query>
    </>
  );
}
