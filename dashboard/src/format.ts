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
