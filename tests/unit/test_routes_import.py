"""parse_routes: real `bin/rails routes` output (Rails 6.1, both layouts) in, config routes out.

The fixture is tests/fixtures/rails_routes/ (see its README): 251 routes printed, an engine
mounted at /blog and /news, redirects, constraints, Rack apps and Rails' own routes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from strangler.routing import parse_match
from strangler.routing.routes_import import (
    ImportedRoute,
    Layout,
    Requirement,
    RouteKind,
    RoutesImport,
    parse_routes,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "rails_routes"
TABLE = (FIXTURES / "routes.txt").read_text()
EXPANDED = (FIXTURES / "routes_expanded.txt").read_text()
LAYOUTS = pytest.mark.parametrize("text", [TABLE, EXPANDED], ids=["table", "expanded"])


def by_name(result: RoutesImport) -> dict[str, ImportedRoute]:
    return {route.name: route for route in result.routes}


def test_layouts_are_detected() -> None:
    assert parse_routes(TABLE).layout is Layout.TABLE
    assert parse_routes(EXPANDED).layout is Layout.EXPANDED


@LAYOUTS
def test_counts(text: str) -> None:
    result = parse_routes(text)
    assert result.rows_read == 251  # 236 app routes + 15 in `Routes for Blog::Engine`
    # 251 rows - 2 engine mount lines + 2 x 15 engine routes = 279, minus 49 PATCH/PUT pairs
    # merged into one route each, minus 10 Conductor routes and 9 routes an earlier route
    # takes every request of, skipped: 1 a constraint told apart, 8 of Rails' own GET routes
    # behind the app's catch-all.
    assert len(result.routes) == 220
    assert len(result.skipped) == 19


def test_both_layouts_give_the_same_routes() -> None:
    def table(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
        return [(r.name, r.match, r.notes) for r in parse_routes(text).routes]

    assert table(TABLE) == table(EXPANDED)
    assert [s.text for s in parse_routes(TABLE).skipped] == [
        s.text for s in parse_routes(EXPANDED).skipped
    ]


@LAYOUTS
def test_every_match_is_valid_and_every_name_unique(text: str) -> None:
    result = parse_routes(text)
    for route in result.routes:
        parse_match(route.match)
    names = [route.name for route in result.routes]
    assert len(set(names)) == len(names)


@LAYOUTS
@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("home.index", "GET /"),
        ("projects.index", "GET /projects(.:format)"),
        ("projects.show", "GET /projects/:id(.:format)"),
        # PATCH and PUT of one resource are one route; DELETE (another action) its own.
        ("projects.update", "PATCH|PUT /projects/:id(.:format)"),
        ("projects.destroy", "DELETE /projects/:id(.:format)"),
        ("projects.archive", "POST /projects/:id/archive(.:format)"),
        ("projects.search", "GET /projects/search(.:format)"),
        ("tasks.complete", "PATCH /projects/:project_id/tasks/:id/complete(.:format)"),
        ("attachments.destroy", "DELETE /attachments/:id(.:format)"),  # shallow
        # comments#... serves two nestings (a concern used twice): Rails' route names tell
        # them apart, the carried-over one for the unnamed PATCH|PUT and DELETE rows.
        (
            "project_task_comments.index",
            "GET /projects/:project_id/tasks/:task_id/comments(.:format)",
        ),
        ("project_comments.index", "GET /projects/:project_id/comments(.:format)"),
        ("project_comment.update", "PATCH|PUT /projects/:project_id/comments/:id(.:format)"),
        ("project_comment.destroy", "DELETE /projects/:project_id/comments/:id(.:format)"),
        ("sessions.destroy", "DELETE /session(.:format)"),
        ("sessions.create", "POST /session(.:format)"),
        ("admin.dashboard.show", "GET /admin(.:format)"),
        ("admin.users.impersonate", "POST /admin/users/:id/impersonate(.:format)"),
        ("api.v1.tasks.show", "GET /api/v1/tasks/:id(.:format)"),
        ("api.v1.users.me", "GET /api/v1/me(.:format)"),
        ("public.shares.show", "GET /p/shares/:token(.:format)"),
        ("articles.show", "GET (/:locale)/articles/:id(.:format)"),
        ("reports.show", "GET /reports/*path"),
        ("downloads.show", "GET /downloads/:file.:ext(.:format)"),
        ("webhooks.receive", "ANY /webhooks/:provider(.:format)"),  # via: :all
        ("search.index", "GET|POST /search(.:format)"),
        ("health", "GET /health(.:format)"),
        ("status_app", "ANY /status(/*mounted_path)"),
        ("errors.not_found", "GET /*unmatched(.:format)"),
        # Rails' own routes that users' requests reach in production.
        (
            "active_storage.direct_uploads.create",
            "POST /rails/active_storage/direct_uploads(.:format)",
        ),
        ("active_storage.disk.update", "PUT /rails/active_storage/disk/:encoded_token(.:format)"),
        (
            "action_mailbox.ingresses.relay.inbound_emails.create",
            "POST /rails/action_mailbox/relay/inbound_emails(.:format)",
        ),
    ],
)
def test_sample_routes(text: str, name: str, match: str) -> None:
    assert by_name(parse_routes(text))[name].match == match


@LAYOUTS
def test_order_is_rails_order(text: str) -> None:
    names = [route.name for route in parse_routes(text).routes]
    assert names[:3] == ["home.index", "projects.activity", "projects.duplicate"]
    assert names.index("projects.new") < names.index("projects.show")
    assert names.index("errors.not_found") < names.index("active_storage.direct_uploads.create")


@LAYOUTS
def test_engine_routes_are_prefixed_at_each_mount_point(text: str) -> None:
    result = parse_routes(text)
    routes = by_name(result)
    names = [route.name for route in result.routes]
    assert routes["blog.root.index"].match == "GET /blog"
    assert routes["blog.posts.index"].match == "GET /blog/posts(.:format)"
    assert routes["blog.posts.update"].match == "PATCH|PUT /blog/posts/:id(.:format)"
    assert routes["news.root.index"].match == "GET /news"
    assert routes["news.comments.destroy"].match == (
        "DELETE /news/posts/:post_id/comments/:id(.:format)"
    )
    assert routes["news.archive.show"].match == "GET /news/archive/:year(/:month)(.:format)"
    assert routes["news.posts.show"].engine == "Blog::Engine"
    assert routes["news.posts.show"].rails_name == "news.post"  # the helper: news.post_path
    # Where the mount lines were: after `health`, before `status_app`; the mounts are no routes.
    blog, news = names.index("blog.root.index"), names.index("news.root.index")
    assert names[blog - 1] == "health"
    assert news == blog + 14
    assert names[news + 14] == "status_app"
    assert not [r for r in result.routes if r.match in ("ANY /blog", "ANY /news")]


@LAYOUTS
def test_redirects_are_imported_with_a_note(text: str) -> None:
    routes = by_name(parse_routes(text))
    assert routes["redirect.old_pricing"].match == "GET /old-pricing(.:format)"
    assert routes["redirect.old_pricing"].kind is RouteKind.REDIRECT
    assert routes["redirect.old_pricing"].notes == (
        "redirect(301, /pricing): the redirect is answered by Rails",
    )
    # `{page}` in the target is not a requirements hash.
    assert routes["redirect.docs.page"].target == "redirect(302, /help/%{page})"
    assert routes["redirect.docs.page"].requirements == ()
    assert routes["redirect.legacy_blog"].target == "redirect(301)"  # a block redirect


@LAYOUTS
def test_regex_constraints_are_dropped_with_a_note_and_defaults_recorded(text: str) -> None:
    routes = by_name(parse_routes(text))
    show = routes["api.v2.projects.show"]
    assert show.match == "GET /api/v2/projects/:id(.:format)"
    assert show.requirements == (
        Requirement("format", ":json", is_regex=False),
        Requirement("id", r"/\d+/", is_regex=True),
    )
    assert show.notes == (
        r"constraint {id: /\d+/} not enforced by the gateway; Rails applies it "
        "(check it before stage new)",
        "default {format: :json} is set by Rails, not the gateway (the new backend must set it "
        "too)",
    )
    archive = routes["blog.archive.show"]
    assert [r.value for r in archive.requirements] == [r"/\d{4}/", r"/\d{1,2}/"]
    assert archive.notes[0].startswith(r"constraint {year: /\d{4}/, month: /\d{1,2}/}")
    assert routes["articles.index"].notes[0].startswith("constraint {locale: /en|fr|de/}")
    # A default restricts nothing, but the new backend has to fill it in as Rails does.
    download = routes["invoices.download"]
    assert download.requirements == (Requirement("format", ":pdf", is_regex=False),)
    assert download.notes == (
        "default {format: :pdf} is set by Rails, not the gateway (the new backend must set it too)",
    )
    assert download.constraints == ()
    assert routes["projects.index"].notes == ()


@LAYOUTS
def test_a_route_only_a_constraint_told_apart_is_skipped(text: str) -> None:
    result = parse_routes(text)
    assert by_name(result)["photos.show"].match == "GET /photos/:id(.:format)"
    assert "photos.by_slug" not in by_name(result)
    [skipped] = [s for s in result.skipped if s.text == "GET /photos/:slug(.:format)"]
    assert "same requests" in skipped.reason
    assert r"by its constraint {id: /[A-Z]\d{5}/}" in skipped.reason
    assert skipped.line == (199 if text is TABLE else 986)
    assert "'GET /photos/:id(.:format)'" in skipped.reason


@LAYOUTS
def test_development_only_rails_routes_are_skipped(text: str) -> None:
    result = parse_routes(text)
    conductor = [s for s in result.skipped if "development-only" in s.reason]
    assert len(conductor) == 10
    assert all("/rails/conductor/" in s.text for s in conductor)
    assert not [r for r in result.routes if "/rails/conductor/" in r.match]
    if text is TABLE:
        assert [s.line for s in conductor] == [*range(218, 224), *range(225, 229)]


def test_rails_info_and_mailers_are_development_only() -> None:
    text = """\
       Prefix Verb URI Pattern                 Controller#Action
   rails_info GET  /rails/info(.:format)       rails/info#index
rails_mailers GET  /rails/mailers(.:format)    rails/mailers#index
              GET  /rails/mailers/*path        rails/mailers#preview
recede_historical_location GET /recede_historical_location(.:format) turbo/native/navigation#recede
"""
    result = parse_routes(text)
    assert [s.line for s in result.skipped] == [2, 3, 4]
    assert [r.name for r in result.routes] == ["turbo.native.navigation.recede"]


GARBAGE_TABLE = """\
DEPRECATION WARNING: Initialization autoloaded the constants ApplicationHelper. (called from <top>)
Running via Spring preloader in process 4242
                   Prefix Verb   URI Pattern                    Controller#Action
                 projects GET    /projects(.:format)            projects#index
this line is not a route
                  project GET    /projects/:id(.:format)
                  broken! GET    /broken(.:format)              broken#index
                          GET    /a//b(.:format)                pages#double_slash
                          BREW   /coffee(.:format)              pot#brew
                     root GET    /                              home#index
"""


def test_garbage_lines_are_skipped_with_line_numbers_and_reasons() -> None:
    result = parse_routes(GARBAGE_TABLE)
    assert [(r.name, r.match) for r in result.routes] == [
        ("projects.index", "GET /projects(.:format)"),
        ("home.index", "GET /"),
    ]
    skipped = [(s.line, s.reason.split(":")[0]) for s in result.skipped]
    assert skipped == [
        (1, "not a route (before the table's header)"),
        (2, "not a route (before the table's header)"),
        (5, "not a route (in the table)"),
        (6, "truncated route"),
        (7, "not a route"),
        (8, "the gateway cannot match this pattern"),
        (9, "the gateway cannot match this pattern"),
    ]
    assert "empty path segment" in result.skipped[5].reason
    assert "unknown verb 'BREW'" in result.skipped[6].reason
    assert result.skipped[0].text.startswith("DEPRECATION WARNING")


def test_garbage_in_the_expanded_layout() -> None:
    text = """\
Loading development environment
--[ Route 1 ]----------------------
Prefix            | projects
Verb              | GET
URI               | /projects(.:format)
Controller#Action | projects#index
stray text inside a block
--[ Route 2 ]----------------------
Prefix            | project
Verb              | GET
--[ Route 3 ]----------------------
Prefix            | root
Verb              | GET
URI               | /
Controller#Action | home#index
Source Location   | config/routes.rb:2
"""
    result = parse_routes(text)
    assert [r.match for r in result.routes] == ["GET /projects(.:format)", "GET /"]
    assert [(s.line, s.reason) for s in result.skipped] == [
        (1, "not a route: expected `--[ Route N ]--` or `Key | value`"),
        (7, "not a route: expected `--[ Route N ]--` or `Key | value`"),
        (8, "route block without URI or Controller#Action"),
    ]


@pytest.mark.parametrize(
    ("reqs", "requirements"),
    [
        # Ruby < 3.4 Hash#inspect
        (r"photos#show {:id=>/\d+/}", [("id", r"/\d+/", True)]),
        (
            r"photos#show {:format=>:json, :id=>/[A-Z]\d{5}/i}",
            [("format", ":json", False), ("id", r"/[A-Z]\d{5}/i", True)],
        ),
        # Ruby 3.4: `key: value`, and `"key" => value` for string keys
        (r"photos#show {id: /\d+/}", [("id", r"/\d+/", True)]),
        (
            r"photos#show {format: :json, id: /\d+/}",
            [("format", ":json", False), ("id", r"/\d+/", True)],
        ),
        (r'photos#show {"id" => /[^\/]+/}', [("id", r"/[^\/]+/", True)]),
        # regex text with what would end a hash: ", " "}" inside a class or escaped
        (r"photos#show {:id=>/a, b|[}]/}", [("id", "/a, b|[}]/", True)]),
        (r'photos#show {:subdomain=>"api"}', [("subdomain", '"api"', False)]),
    ],
)
def test_requirement_hashes(reqs: str, requirements: list[tuple[str, str, bool]]) -> None:
    result = parse_routes(f"photo GET /photos/:id(.:format) {reqs}\n")
    [route] = result.routes
    assert route.target == "photos#show"
    assert [(r.key, r.value, r.is_regex) for r in route.requirements] == requirements


@pytest.mark.parametrize(
    ("reqs", "notes"),
    [
        (
            r"photos#show {:id=>/\d+/}",
            [r"constraint {id: /\d+/} not enforced by the gateway; Rails applies it"],
        ),
        # `format: /json/` is a regex on the format param like any other.
        (
            r"photos#show {:format=>/json/, :id=>/\d+/}",
            [r"constraint {format: /json/, id: /\d+/} not enforced by the gateway"],
        ),
        (
            r'photos#show {:subdomain=>"api"}',
            [
                'subdomain constraint "api" not enforced: the gateway routes by method and path, '
                "for any host"
            ],
        ),
        (
            r'photos#show {host: "admin.example.com", port: 8443}',
            ['host constraint "admin.example.com" not enforced', "port constraint 8443 not"],
        ),
        (
            r'photos#show {:format=>:json, :page=>"1"}',
            ['default {format: :json, page: "1"} is set by Rails, not the gateway'],
        ),
        (r"photos#show", []),
    ],
)
def test_every_dropped_requirement_gets_a_note(reqs: str, notes: list[str]) -> None:
    [route] = parse_routes(f"photo GET /photos/:id(.:format) {reqs}\n").routes
    assert len(route.notes) == len(notes)
    for note, start in zip(route.notes, notes, strict=True):
        assert note.startswith(start)


def test_a_target_whose_braces_are_no_hash_keeps_them() -> None:
    result = parse_routes("GET /x(.:format) redirect(301, /y/{z} {oops)\n")
    [route] = result.routes
    assert route.target == "redirect(301, /y/{z} {oops)"
    assert route.requirements == ()


def test_nested_engines_are_prefixed_through_every_mount() -> None:
    # Rails collects an engine's routes before those of the engine that mounts it, so the
    # inner section is printed first.
    text = """\
Prefix Verb URI Pattern Controller#Action
 outer      /outer      Outer::Engine

Routes for Inner::Engine:
items GET /items(.:format) inner/items#index

Routes for Outer::Engine:
inner      /inner  Inner::Engine
 home GET  /       outer/home#index

Routes for Orphan::Engine:
lost GET /lost(.:format) orphan/lost#index
"""
    result = parse_routes(text)
    assert [(r.name, r.match) for r in result.routes] == [
        ("outer.inner.items.index", "GET /outer/inner/items(.:format)"),
        ("outer.home.index", "GET /outer"),
    ]
    [orphan] = result.skipped
    assert (orphan.line, orphan.reason) == (
        12,
        "Orphan::Engine is never mounted in the app's routes",
    )


def test_rack_apps_and_mounts() -> None:
    text = """\
   sidekiq_web      /sidekiq                 Sidekiq::Web
         cable      /cable                   #<ActionCable::Server::Base:0x000055d5c8>
          ping GET  /ping(.:format)          Inline handler (Proc/Lambda)
          root      /                        RootApp
"""
    routes = parse_routes(text).routes
    assert [(r.name, r.match, r.kind) for r in routes] == [
        ("sidekiq_web", "ANY /sidekiq(/*mounted_path)", RouteKind.MOUNT),
        ("cable", "ANY /cable(/*mounted_path)", RouteKind.MOUNT),
        ("ping", "GET /ping(.:format)", RouteKind.RACK_APP),
        ("root", "ANY /(*mounted_path)", RouteKind.MOUNT),
    ]
    for route in routes:
        parse_match(route.match)


def test_names_stay_unique_when_a_controller_action_repeats_without_route_names() -> None:
    text = """\
          GET /a(.:format) pages#show
          GET /b(.:format) pages#show
pages_c   GET /c(.:format) pages#show
pages_show GET /d(.:format) other#thing
"""
    names = [r.name for r in parse_routes(text).routes]
    assert names == ["pages.show", "pages.show.2", "pages_c.show", "other.thing"]


def test_text_that_is_not_routes_reads_no_rows() -> None:
    result = parse_routes("You don't have any routes defined!\n")
    assert (result.rows_read, result.routes) == (0, ())
    assert parse_routes("").rows_read == 0


@LAYOUTS
def test_routes_behind_the_apps_catch_all_are_skipped_naming_it(text: str) -> None:
    # Rails appends its own routes after the app's; the app's `get "*unmatched"` (with a
    # lambda constraint `rails routes` does not print) comes first and takes every GET.
    result = parse_routes(text)
    hidden = [s for s in result.skipped if "'GET /*unmatched(.:format)'" in s.reason]
    assert len(hidden) == 8
    assert all(s.text.startswith("GET /rails/") for s in hidden)
    assert "rails_service_blob.show" not in by_name(result)
    assert "a constraint `rails routes` does not print" in hidden[0].reason
    # POST routes after it are not GET requests, so they stay.
    assert "active_storage.direct_uploads.create" in by_name(result)


@pytest.mark.parametrize(
    ("key", "value", "is_regex", "param", "accepted"),
    [
        # Rails matches a requirement against the whole param.
        ("id", r"/\d+/", True, "42", True),
        ("id", r"/\d+/", True, "42a", False),
        ("id", r"/[A-Z]\d{5}/i", True, "a12345", True),
        ("locale", "/en|fr|de/", True, "blog", False),
        ("locale", "/en|fr|de/", True, "fr", True),
        # Ruby syntax Python reads otherwise, or not at all: can't tell.
        ("id", r"/\h+/", True, "ff", None),
        ("id", "/[[:alpha:]]+/", True, "a", None),
        ("id", r"/(?<n>\d)\k<n>/", True, "11", None),
        # Not a path constraint.
        ("subdomain", '"api"', False, "api", None),
        ("format", ":json", False, "json", None),
    ],
)
def test_requirement_accepts(
    key: str, value: str, is_regex: bool, param: str, accepted: bool | None
) -> None:
    assert Requirement(key, value, is_regex).accepts(param) is accepted
