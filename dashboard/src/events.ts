import { useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";

// What each event kind of GET /api/v1/events makes stale.
const STALE: Record<string, string[][]> = {
  change: [["routes"], ["route"], ["progress"], ["audit"]],
  verdict: [["routes"], ["route"], ["progress"]],
  review: [["diffs"], ["routes"], ["progress"]],
  alert: [["alerts"]],
};

/** Follows the admin's event stream and refetches what an event makes stale; the browser's
 * EventSource reconnects on its own. Returns whether the stream is open. */
export function useLiveEvents(): boolean {
  const client = useQueryClient();
  const [isLive, setIsLive] = useState(false);
  useEffect(() => {
    const source = new EventSource("/api/v1/events");
    source.onopen = () => setIsLive(true);
    source.onerror = () => setIsLive(false);
    for (const [kind, keys] of Object.entries(STALE)) {
      source.addEventListener(kind, () => {
        for (const queryKey of keys) void client.invalidateQueries({ queryKey });
      });
    }
    return () => source.close();
  }, [client]);
  return isLive;
}
