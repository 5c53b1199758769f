import {
  type ColumnDef,
  type SortingState,
  flexRender,
  getCoreRowModel,
  getFilteredRowModel,
  getSortedRowModel,
  useReactTable,
} from "@tanstack/react-table";
import { useMemo, useState } from "react";
import { Link } from "wouter";
import { STAGES, type RouteRow } from "../api/types";
import { Query } from "../components/states";
import { StageBadge } from "../components/StageBadge";
import { percent, routeHref } from "../format";
import { useProgress, useRoutes } from "../queries";

export interface RouteLine extends RouteRow {
  next_step: string;
}

const columns: ColumnDef<RouteLine>[] = [
  {
    accessorKey: "route",
    header: "Route",
    cell: ({ row }) => <Link href={routeHref(row.original.route)}>{row.original.route}</Link>,
  },
  { accessorKey: "unit", header: "Group" },
  {
    accessorKey: "stage",
    header: "Stage",
    sortingFn: (a, b) => STAGES.indexOf(a.original.stage) - STAGES.indexOf(b.original.stage),
    cell: ({ row }) => <StageBadge stage={row.original.stage} />,
  },
  {
    accessorKey: "weight",
    header: "Canary weight",
    cell: ({ row }) => (row.original.weight === null ? "–" : `${row.original.weight} %`),
  },
  {
    accessorKey: "share_new_hour",
    header: "Share on new (hour)",
    cell: ({ row }) => percent(row.original.share_new_hour),
  },
  {
    accessorKey: "parity",
    header: "Shadow parity (95 % low)",
    cell: ({ row }) =>
      row.original.compared === 0
        ? "–"
        : `${percent(row.original.parity)} (≥ ${percent(row.original.parity_low)}, ${row.original.compared} compared)`,
  },
  {
    id: "verdict",
    header: "Last verdict",
    accessorFn: (row) => row.last_verdict?.outcome ?? "",
    cell: ({ row }) => {
      const verdict = row.original.last_verdict;
      return verdict === null ? "–" : `${verdict.outcome} → ${verdict.action}`;
    },
  },
  { accessorKey: "next_step", header: "What blocks the next stage", enableSorting: false },
];

export function joinProgress(routes: RouteRow[], steps: Map<string, string>): RouteLine[] {
  return routes.map((row) => ({ ...row, next_step: steps.get(row.route) ?? "" }));
}

export function Routes() {
  const routes = useRoutes();
  const progress = useProgress();
  return (
    <>
      <h1>Routes</h1>
      <Query what="routes" query={routes} isEmpty={(r) => r.routes.length === 0} empty="No routes configured.">
        {(r) => {
          const steps = new Map((progress.data?.routes ?? []).map((p) => [p.route, p.next_step]));
          return <RouteTable lines={joinProgress(r.routes, steps)} />;
        }}
      </Query>
    </>
  );
}

export function RouteTable({ lines }: { lines: RouteLine[] }) {
  const [sorting, setSorting] = useState<SortingState>([]);
  const [stage, setStage] = useState("");
  const [group, setGroup] = useState("");
  const [text, setText] = useState("");
  const groups = useMemo(() => [...new Set(lines.map((line) => line.unit))].sort(), [lines]);
  const shown = useMemo(
    () => lines.filter((line) => (!stage || line.stage === stage) && (!group || line.unit === group)),
    [lines, stage, group],
  );
  const table = useReactTable({
    data: shown,
    columns,
    state: { sorting, globalFilter: text },
    onSortingChange: setSorting,
    onGlobalFilterChange: setText,
    globalFilterFn: "includesString",
    getCoreRowModel: getCoreRowModel(),
    getSortedRowModel: getSortedRowModel(),
    getFilteredRowModel: getFilteredRowModel(),
  });
  return (
    <>
      <div className="filters">
        <label>
          Stage
          <select value={stage} onChange={(event) => setStage(event.target.value)}>
            <option value="">every stage</option>
            {STAGES.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Group
          <select value={group} onChange={(event) => setGroup(event.target.value)}>
            <option value="">every group</option>
            {groups.map((g) => (
              <option key={g}>{g}</option>
            ))}
          </select>
        </label>
        <label>
          Search
          <input type="search" value={text} onChange={(event) => setText(event.target.value)} />
        </label>
      </div>
      <div className="scroll">
        <table>
          <thead>
            {table.getHeaderGroups().map((headers) => (
              <tr key={headers.id}>
                {headers.headers.map((header) => {
                  const sorted = header.column.getIsSorted();
                  const label = flexRender(header.column.columnDef.header, header.getContext());
                  return (
                    <th
                      key={header.id}
                      scope="col"
                      aria-sort={sorted === "asc" ? "ascending" : sorted === "desc" ? "descending" : undefined}
                    >
                      {header.column.getCanSort() ? (
                        <button type="button" className="sort" onClick={header.column.getToggleSortingHandler()}>
                          {label}
                          {sorted === "asc" ? " ▲" : sorted === "desc" ? " ▼" : ""}
                        </button>
                      ) : (
                        label
                      )}
                    </th>
                  );
                })}
              </tr>
            ))}
          </thead>
          <tbody>
            {table.getRowModel().rows.map((row) => (
              <tr key={row.id} data-route={row.original.route}>
                {row.getVisibleCells().map((cell) => (
                  <td key={cell.id} data-column={cell.column.id}>
                    {flexRender(cell.column.columnDef.cell, cell.getContext())}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {table.getRowModel().rows.length === 0 && <p className="state empty">No route matches these filters.</p>}
    </>
  );
}
