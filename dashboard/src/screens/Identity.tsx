// The Rails identity bridge: the signing keys (kid, state and times; never key material) and
// what the bridge counted, from GET /api/v1/identity.
import type { Identity as IdentityDoc } from "../api/types";
import { Query } from "../components/states";
import { when } from "../format";
import { useIdentity } from "../queries";

function Counts({ title, counts, what }: { title: string; counts: Record<string, number> | null; what: string }) {
  const id = `counts-${what}`;
  return (
    <section aria-labelledby={id}>
      <h2 id={id}>{title}</h2>
      {counts === null ? (
        <p className="state">Metrics are off in this gateway (metrics.enabled), so nothing is counted.</p>
      ) : Object.keys(counts).length === 0 ? (
        <p className="state empty">None yet.</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col">{what}</th>
              <th scope="col">Count</th>
            </tr>
          </thead>
          <tbody>
            {Object.entries(counts).map(([label, count]) => (
              <tr key={label}>
                <td>{label}</td>
                <td>{count}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Bridge({ identity }: { identity: IdentityDoc }) {
  return (
    <>
      <section aria-labelledby="keys-title">
        <h2 id="keys-title">Signing keys</h2>
        <p className="note">
          Public halves at <a href="/.well-known/jwks.json">/.well-known/jwks.json</a>; tokens live{" "}
          {identity.token_ttl_s} s.
        </p>
        {/* Focusable: on a phone the kids overflow, and a keyboard must be able to scroll them. */}
        <div className="scroll" tabIndex={0} role="region" aria-labelledby="keys-title">
          <table>
            <thead>
              <tr>
                <th scope="col">Key id (kid)</th>
                <th scope="col">State</th>
                <th scope="col">Published</th>
                <th scope="col">Activated</th>
                <th scope="col">Retired</th>
                <th scope="col">Unpublished</th>
              </tr>
            </thead>
            <tbody>
              {identity.keys.map((key) => (
                <tr key={key.kid}>
                  <td>
                    <code className="numbers">{key.kid}</code>
                  </td>
                  <td>{key.state}</td>
                  <td>{when(key.published_at)}</td>
                  <td>{when(key.activated_at)}</td>
                  <td>{when(key.retired_at)}</td>
                  <td>{when(key.removed_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
      <section aria-labelledby="tokens-title">
        <h2 id="tokens-title">Identity tokens</h2>
        <p>
          {identity.tokens_issued === null
            ? "Metrics are off in this gateway, so tokens are not counted."
            : `${identity.tokens_issued} minted for requests to new.`}
        </p>
      </section>
      <Counts title="Sessions bridged" counts={identity.sessions} what="Outcome" />
      <Counts title="CSRF refusals" counts={identity.csrf_refused} what="Reason" />
    </>
  );
}

export function Identity() {
  const identity = useIdentity();
  return (
    <>
      <h1>Identity bridge</h1>
      <Query
        what="the identity bridge"
        query={identity}
        isEmpty={(doc) => doc === null}
        empty="This gateway has no `rails:` section: there is no identity bridge."
      >
        {(doc) => doc && <Bridge identity={doc} />}
      </Query>
    </>
  );
}
