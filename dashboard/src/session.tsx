import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { ApiError, api, errorText, setCsrfToken } from "./api/client";
import type { Caller, SessionCreated } from "./api/types";

export const SESSION_KEY = ["session"] as const;

/** Who is logged in (null: nobody). The cookie is HttpOnly: the page only learns of it by
 * asking, which also hands back the session's CSRF token after a reload. */
export function useSession() {
  return useQuery({
    queryKey: SESSION_KEY,
    queryFn: async (): Promise<Caller | null> => {
      try {
        const caller = await api<Caller>("/api/v1/session");
        setCsrfToken(caller.csrf_token ?? null);
        return caller;
      } catch (error) {
        if (error instanceof ApiError && error.status === 401) return null;
        throw error;
      }
    },
    staleTime: Infinity,
    refetchInterval: false,
  });
}

type Credentials = { token: string } | { user: string; password: string };

export function Login() {
  const client = useQueryClient();
  const [mode, setMode] = useState<"token" | "user">("token");
  const [token, setToken] = useState("");
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const login = useMutation({
    mutationFn: (credentials: Credentials) =>
      api<SessionCreated>("/api/v1/session", { method: "POST", body: credentials }),
    onSuccess: (created) => {
      setCsrfToken(created.csrf_token);
      void client.invalidateQueries({ queryKey: SESSION_KEY });
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    login.mutate(mode === "token" ? { token } : { user, password });
  };
  return (
    <main className="login">
      <h1>strangler</h1>
      <form onSubmit={submit} aria-labelledby="login-title">
        <h2 id="login-title">Log in</h2>
        <fieldset>
          <legend>With</legend>
          <label>
            <input type="radio" name="mode" checked={mode === "token"} onChange={() => setMode("token")} />
            an admin token
          </label>
          <label>
            <input type="radio" name="mode" checked={mode === "user"} onChange={() => setMode("user")} />
            a user and password
          </label>
        </fieldset>
        {mode === "token" ? (
          <label>
            Token
            <input
              type="password"
              name="token"
              autoComplete="off"
              placeholder="stk_..."
              required
              value={token}
              onChange={(event) => setToken(event.target.value)}
            />
          </label>
        ) : (
          <>
            <label>
              User
              <input
                name="user"
                autoComplete="username"
                required
                value={user}
                onChange={(event) => setUser(event.target.value)}
              />
            </label>
            <label>
              Password
              <input
                type="password"
                name="password"
                autoComplete="current-password"
                required
                value={password}
                onChange={(event) => setPassword(event.target.value)}
              />
            </label>
          </>
        )}
        {login.isError && <p role="alert" className="error">{errorText(login.error)}</p>}
        <button type="submit" disabled={login.isPending}>
          {login.isPending ? "Logging in…" : "Log in"}
        </button>
      </form>
    </main>
  );
}

export function useLogout() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: () => api<void>("/api/v1/session", { method: "DELETE" }),
    onSuccess: () => {
      setCsrfToken(null);
      // Nothing of the old session's data stays in memory; the session query itself is kept
      // (set to nobody) so that the page shows the login at once.
      client.setQueryData(SESSION_KEY, null);
      client.removeQueries({ predicate: (query) => query.queryKey[0] !== SESSION_KEY[0] });
    },
  });
}

/** Why the caller can't act, or null when they can. */
export function cannotAct(caller: Caller): string | null {
  return caller.scope === "write" ? null : `${caller.subject} has scope read: changes need scope write`;
}
