"""Seed data for the demo's "projects and tasks" domain, shared by the legacy and the new app.

Rules: deterministic (no clock, no randomness), immutable, and the only source of the demo's
starting data. Both apps start from `seed_projects()` and `seed_tasks()`, so their answers are
equal until someone writes: writes go to the legacy app only, and nothing copies them to the new
app. That gap is on purpose; it is the drift that data verification exists to catch.

Timestamps are aware UTC datetimes; how to print them is each app's business (the two apps print
them differently, deliberately).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta


@dataclass(frozen=True, slots=True)
class Project:
    """One row of the `projects` table."""

    id: int
    name: str
    owner: str
    created_at: datetime
    updated_at: datetime
    # A Rails integer enum, `enum status: {active: 0, archived: 1}`: only the database has it.
    status: int = 0


@dataclass(frozen=True, slots=True)
class Task:
    """One row of the `tasks` table; `project_id` is the foreign key to `Project.id`."""

    id: int
    project_id: int
    title: str
    is_done: bool
    due_on: date | None
    created_at: datetime
    updated_at: datetime


# Seconds are not round on purpose: an app that drops or rounds sub-minute precision shows up.
_EPOCH = datetime(2024, 1, 15, 9, 30, 17, tzinfo=UTC)

_PROJECTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Website redesign",
        "ada@example.com",
        ("Audit current pages", "New colour palette", "Migrate blog posts", "Launch checklist"),
    ),
    (
        "Mobile app",
        "grace@example.com",
        ("Login screen", "Offline sync", "Push notifications"),
    ),
    (
        "Billing migration",
        "linus@example.com",
        (
            "Export invoices",
            "Map tax codes",
            "Dual-run reconciliation",
            "Switch provider",
            "Sunset",
        ),
    ),
    (
        "Customer portal",
        "barbara@example.com",
        ("Single sign-on", "Ticket history"),
    ),
    (
        "Data warehouse",
        "edsger@example.com",
        ("Nightly extract", "Schema for events", "Dashboards"),
    ),
)


def seed_projects() -> tuple[Project, ...]:
    """The five seeded projects, ordered by id (ids 1-5)."""
    projects = []
    for index, (name, owner, _tasks) in enumerate(_PROJECTS):
        created_at = _EPOCH + timedelta(days=7 * index, minutes=13 * index)
        updated_at = created_at + timedelta(days=3, hours=index, seconds=41)
        projects.append(Project(index + 1, name, owner, created_at, updated_at))
    return tuple(projects)


def seed_tasks() -> tuple[Task, ...]:
    """All seeded tasks, ordered by id; ids are global, as in a SQL table."""
    tasks = []
    task_id = 0
    for project in seed_projects():
        titles = _PROJECTS[project.id - 1][2]
        for position, title in enumerate(titles):
            task_id += 1
            created_at = project.created_at + timedelta(hours=2 * position, seconds=position)
            # Every third task has no due date: nullable columns are where serializers disagree.
            due_on = None if task_id % 3 == 0 else (created_at + timedelta(days=14)).date()
            tasks.append(
                Task(
                    id=task_id,
                    project_id=project.id,
                    title=title,
                    is_done=position < len(titles) // 2,
                    due_on=due_on,
                    created_at=created_at,
                    updated_at=created_at + timedelta(days=1, minutes=position),
                )
            )
    return tuple(tasks)
