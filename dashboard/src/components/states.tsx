import type { ReactNode } from "react";
import { errorText } from "../api/client";

export function Loading({ what }: { what: string }) {
  return (
    <p className="state" role="status" aria-live="polite">
      Loading {what}…
    </p>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="state empty">{children}</p>;
}

export function Failed({ what, error }: { what: string; error: unknown }) {
  return (
    <p className="state error" role="alert">
      Could not load {what}: {errorText(error)}
    </p>
  );
}

/** The three states every query goes through, then its content. */
export function Query<T>({
  what,
  query,
  isEmpty,
  empty,
  children,
}: {
  what: string;
  query: { isPending: boolean; isError: boolean; error: unknown; data: T | undefined };
  isEmpty?: (data: T) => boolean;
  empty?: ReactNode;
  children: (data: T) => ReactNode;
}) {
  if (query.isPending) return <Loading what={what} />;
  if (query.isError || query.data === undefined) return <Failed what={what} error={query.error} />;
  if (isEmpty?.(query.data)) return <Empty>{empty ?? `No ${what} yet.`}</Empty>;
  return <>{children(query.data)}</>;
}
