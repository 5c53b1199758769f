"""A realistic Rails route set of any size, as `bin/rails routes` would print it.

Shared by bench_routing.py (router cost at 20 and 2,000 routes) and proxy_bench.py (a gateway
loaded with 2,000 routes). Deterministic: the same `n` always gives the same routes, in the same
order, with unique names.

What is in it, in file order, the way a grown Rails app looks:

- `GET /` and the Rails 7.1 health check `GET /up(.:format)`;
- resources in four namespaces (top level, /admin, /api/v1, /api/v2), each block printed as Rails
  prints `resources :x do ... end`: the block's nested resource, member and collection routes
  first, then the seven actions (update as both PATCH and PUT); every second block nests a child
  resource and every sixth a grandchild under it, so nesting goes two deep; `(.:format)` on
  everything;
- Active Storage's routes at the end, whose globs (`*filename(.:format)`) every Rails app has.

A table of `n` routes is the head, as many resource blocks as fit, and the tail, truncated to `n`.
"""

from __future__ import annotations

import sys

from strangler.routing import DecisionReason, RouteSpec, Stage

# Singular nouns whose plural is noun + "s", so nested params (`:project_id`) read naturally.
NOUNS = (
    "project", "task", "comment", "user", "account", "invoice", "order", "product", "customer",
    "payment", "shipment", "report", "team", "member", "document", "attachment", "message",
    "thread", "ticket", "event", "booking", "room", "review", "tag", "note", "article", "page",
    "photo", "album", "video", "playlist", "track", "course", "lesson", "exam", "badge", "coupon",
    "cart", "subscription", "plan", "webhook", "token", "device", "location", "vendor",
    "contract", "milestone", "sprint", "board", "card", "label", "workspace", "channel",
    "notification", "survey", "question", "answer", "vote", "poll", "donation", "campaign",
    "segment", "domain", "certificate", "backup", "deployment", "build", "release", "artifact",
    "pipeline", "job", "worker", "metric", "alert", "incident", "runbook", "service",
)  # fmt: skip
NAMESPACES = ("", "/admin", "/api/v1", "/api/v2")
MEMBER_ACTIONS = (("POST", "archive"), ("GET", "history"), ("POST", "publish"), ("GET", "export"))
COLLECTION_ACTIONS = (("GET", "search"), ("GET", "recent"), ("POST", "import"))

HEAD = (
    ("root", "GET /"),
    ("rails_health_check", "GET /up(.:format)"),
)
TAIL = (
    (
        "rails_service_blob",
        "GET /rails/active_storage/blobs/redirect/:signed_id/*filename(.:format)",
    ),
    (
        "rails_blob_representation",
        "GET /rails/active_storage/representations/redirect/:signed_blob_id/:variation_key"
        "/*filename(.:format)",
    ),
    ("rails_disk_service", "GET /rails/active_storage/disk/:encoded_key/*filename(.:format)"),
    ("update_rails_disk_service", "PUT /rails/active_storage/disk/:encoded_token(.:format)"),
    ("rails_direct_uploads", "POST /rails/active_storage/direct_uploads(.:format)"),
)


def generate_rails_routes(n: int) -> list[RouteSpec]:
    """`n` routes (`n` >= 0), all in stage legacy on the `legacy` backend."""
    return [
        RouteSpec(name, match, Stage.LEGACY, "legacy", DecisionReason.STAGE_LEGACY)
        for name, match in _route_lines(n)
    ]


def generate_rails_routes_yaml(n: int) -> str:
    """The same `n` routes as YAML entries to put under a `routes:` key, one flow mapping a line.

    The text has no `routes:` line of its own: callers write ``"routes:\\n" + text``.
    """
    return "".join(
        f'  - {{name: {name}, match: "{match}", stage: legacy}}\n'
        for name, match in _route_lines(n)
    )


def _route_lines(n: int) -> list[tuple[str, str]]:
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    budget = n - len(HEAD) - len(TAIL)
    if budget <= 0:
        return [*HEAD, *TAIL][:n]
    blocks: list[tuple[int, list[tuple[str, str]]]] = []
    count = 0
    k = 0
    while count < budget:
        namespace_index = k % len(NAMESPACES)
        block = _resource_block(NAMESPACES[namespace_index], k)
        blocks.append((namespace_index, block))
        count += len(block)
        k += 1
    # Rails files group routes by namespace; sorted() is stable, so blocks keep their order.
    body = [line for _, block in sorted(blocks, key=lambda item: item[0]) for line in block]
    lines = [*HEAD, *body[:budget], *TAIL]
    if len({name for name, _ in lines}) != len(lines):
        raise RuntimeError("generated route names are not unique")
    return lines


def _resource_block(namespace: str, k: int) -> list[tuple[str, str]]:
    """`resources :<noun>s do ... end` in `namespace`; `k` picks the nouns and extras."""
    if k >= len(NOUNS) * len(NAMESPACES):
        raise ValueError("not enough nouns for unique resource blocks; add to NOUNS")
    noun = NOUNS[k // len(NAMESPACES)]
    child = NOUNS[(k * 7 + 3) % len(NOUNS)]
    if child == noun:
        child = NOUNS[(k * 7 + 4) % len(NOUNS)]
    grandchild = NOUNS[(k * 11 + 5) % len(NOUNS)]
    if grandchild in (noun, child):
        grandchild = NOUNS[(k * 13 + 6) % len(NOUNS)]

    prefix = namespace.strip("/").replace("/", "_")
    name_prefix = f"{prefix}_" if prefix else ""
    base = f"{namespace}/{noun}s"
    member = f"{base}/:{noun}_id"
    lines: list[tuple[str, str]] = []
    # Inside the block: nested resources first, as Rails evaluates the block before the actions.
    if k % 6 == 1:
        nested = f"{member}/{child}s/:{child}_id/{grandchild}s"
        names = f"{name_prefix}{noun}s_{child}s_{grandchild}s"
        lines += [
            (f"{names}_index", f"GET {nested}(.:format)"),
            (f"{names}_create", f"POST {nested}(.:format)"),
            (f"{names}_show", f"GET {nested}/:id(.:format)"),
        ]
    if k % 2 == 1:
        lines += _seven_actions(f"{name_prefix}{noun}s_{child}s", f"{member}/{child}s")
    verb, action = MEMBER_ACTIONS[k % len(MEMBER_ACTIONS)]
    lines.append((f"{name_prefix}{noun}s_{action}", f"{verb} {base}/:id/{action}(.:format)"))
    verb, action = COLLECTION_ACTIONS[k % len(COLLECTION_ACTIONS)]
    lines.append((f"{name_prefix}{noun}s_{action}", f"{verb} {base}/{action}(.:format)"))
    lines += _seven_actions(f"{name_prefix}{noun}s", base)
    return lines


def _seven_actions(name: str, base: str) -> list[tuple[str, str]]:
    return [
        (f"{name}_index", f"GET {base}(.:format)"),
        (f"{name}_create", f"POST {base}(.:format)"),
        (f"{name}_new", f"GET {base}/new(.:format)"),
        (f"{name}_edit", f"GET {base}/:id/edit(.:format)"),
        (f"{name}_show", f"GET {base}/:id(.:format)"),
        (f"{name}_update", f"PATCH {base}/:id(.:format)"),
        (f"{name}_update_put", f"PUT {base}/:id(.:format)"),
        (f"{name}_destroy", f"DELETE {base}/:id(.:format)"),
    ]


if __name__ == "__main__":
    # `python bench/rails_routes.py 2000 > routes.yaml` for a look at the set, or for a config.
    sys.stdout.write(
        "routes:\n" + generate_rails_routes_yaml(int(sys.argv[1]) if sys.argv[1:] else 20)
    )
