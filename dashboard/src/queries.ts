import { useQuery } from "@tanstack/react-query";
import { ApiError, api } from "./api/client";
import type {
  AlertRow,
  Change,
  Identity,
  Progress,
  ProgressSeries,
  RolloutReport,
  RouteDiffs,
  RouteList,
  RouteSeries,
  SeriesWindow,
} from "./api/types";

const path = encodeURIComponent;

export const useProgress = () =>
  useQuery({ queryKey: ["progress"], queryFn: () => api<Progress>("/api/v1/progress") });

export const useRoutes = () =>
  useQuery({ queryKey: ["routes"], queryFn: () => api<RouteList>("/api/v1/routes") });

export const useAlerts = () =>
  useQuery({
    queryKey: ["alerts"],
    queryFn: () => api<{ alerts: AlertRow[] }>("/api/v1/alerts"),
  });

export const useAudit = (unit?: string, limit = 100) =>
  useQuery({
    queryKey: ["audit", unit ?? null, limit],
    queryFn: () => {
      const query = new URLSearchParams({ limit: String(limit) });
      if (unit) query.set("unit", unit);
      return api<Change[]>(`/api/v1/audit?${query.toString()}`);
    },
  });

export const useRollout = (name: string) =>
  useQuery({
    queryKey: ["route", name],
    queryFn: () => api<RolloutReport>(`/api/v1/routes/${path(name)}`),
  });

/** A route's shadow differences; null when it has no shadow results (a 404). */
export const useDiffs = (name: string) =>
  useQuery({
    queryKey: ["diffs", name],
    queryFn: async () => {
      try {
        return await api<RouteDiffs>(`/api/v1/diffs/${path(name)}`);
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) return null;
        throw error;
      }
    },
  });

/** How often an open chart asks again: workers add their counts to the store's buckets as
 * they flush (store.traffic_flush_interval_s, 15 s by default), so the current bucket fills
 * in while the page is open; a narrow window's buckets fill fastest. */
export const SERIES_REFRESH_MS: Record<SeriesWindow, number> = { "1h": 5_000, "24h": 60_000, "7d": 300_000 };

export const useRouteSeries = (name: string, window: SeriesWindow) =>
  useQuery({
    queryKey: ["series", name, window],
    queryFn: () => api<RouteSeries>(`/api/v1/routes/${path(name)}/series?window=${window}`),
    refetchInterval: SERIES_REFRESH_MS[window],
  });

export const useProgressSeries = (window: SeriesWindow) =>
  useQuery({
    queryKey: ["progress-series", window],
    queryFn: () => api<ProgressSeries>(`/api/v1/progress/series?window=${window}`),
    refetchInterval: SERIES_REFRESH_MS[window],
  });

/** The identity bridge; null when the gateway has no `rails:` (a 404). */
export const useIdentity = () =>
  useQuery({
    queryKey: ["identity"],
    queryFn: async () => {
      try {
        return await api<Identity>("/api/v1/identity");
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) return null;
        throw error;
      }
    },
  });
