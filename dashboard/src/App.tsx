import { Link, Route, Router, Switch } from "wouter";
import { useHashLocation } from "wouter/use-hash-location";
import type { Caller } from "./api/types";
import { Failed, Loading } from "./components/states";
import { useLiveEvents } from "./events";
import { useIdentity } from "./queries";
import { Audit } from "./screens/Audit";
import { Identity } from "./screens/Identity";
import { Overview } from "./screens/Overview";
import { RouteDetail } from "./screens/RouteDetail";
import { Routes } from "./screens/Routes";
import { Login, useLogout, useSession } from "./session";

export function App() {
  const session = useSession();
  if (session.isPending) return <Loading what="the session" />;
  if (session.isError) return <Failed what="the session" error={session.error} />;
  if (session.data === null || session.data === undefined) return <Login />;
  return (
    <Router hook={useHashLocation}>
      <Shell caller={session.data} />
    </Router>
  );
}

function Shell({ caller }: { caller: Caller }) {
  const logout = useLogout();
  const isLive = useLiveEvents();
  const identity = useIdentity();
  return (
    <>
      <header>
        <nav aria-label="Screens">
          <strong className="brand">strangler</strong>
          <Link href="/">Overview</Link>
          <Link href="/routes">Routes</Link>
          <Link href="/audit">Audit</Link>
          {identity.data && <Link href="/identity">Identity</Link>}
        </nav>
        <div className="who">
          <span className={isLive ? "live" : "offline"} title={isLive ? "live updates on" : "live updates off"}>
            {isLive ? "● live" : "○ offline"}
          </span>{" "}
          <span data-testid="caller">
            {caller.subject} ({caller.scope})
          </span>{" "}
          <button type="button" onClick={() => logout.mutate()} disabled={logout.isPending}>
            Log out
          </button>
        </div>
      </header>
      <main>
        <Switch>
          <Route path="/">
            <Overview />
          </Route>
          <Route path="/routes">
            <Routes />
          </Route>
          <Route path="/routes/:name">
            {(params) => <RouteDetail key={params.name} name={decodeURIComponent(params.name)} caller={caller} />}
          </Route>
          <Route path="/audit">
            <Audit />
          </Route>
          <Route path="/identity">
            <Identity />
          </Route>
          <Route>
            <h1>Not found</h1>
            <p>
              No such screen. <Link href="/">Back to the overview</Link>.
            </p>
          </Route>
        </Switch>
      </main>
    </>
  );
}
