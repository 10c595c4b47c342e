"""Where a siyu project's parts are: journeys/, templates/, channels.yaml and the database.

Everything is found relative to the project directory: `SIYU_PROJECT_DIR`, else the current
directory (a Prefect process worker runs flows from the repository's root).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from siyu.channels.base import Channel
from siyu.errors import ConfigError, SpecError
from siyu.language.loader import check_journey_file
from siyu.language.problems import Problem, did_you_mean
from siyu.language.references import Catalog
from siyu.language.spec import JourneySpec
from siyu.policies import Cap, Policies, load_policies
from tasks.context import EngineContext


@dataclass(frozen=True)
class Project:
    root: Path

    @classmethod
    def find(cls, root: Path | None = None) -> Project:
        base = root or Path(os.environ.get("SIYU_PROJECT_DIR", Path.cwd()))
        if not (base / "journeys").is_dir():
            raise ConfigError(
                f"{base} is not a siyu project: it has no journeys/ folder "
                "(run from the project's root or set SIYU_PROJECT_DIR)"
            )
        return cls(base.resolve())

    @property
    def journeys_dir(self) -> Path:
        return self.root / "journeys"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def channels_file(self) -> Path:
        return self.root / "channels.yaml"

    def journey_files(self) -> list[Path]:
        return sorted([*self.journeys_dir.glob("*.yaml"), *self.journeys_dir.glob("*.yml")])

    def channel_names(self) -> set[str]:
        from siyu.channels.registry import load_channel_config

        return set(load_channel_config(self.channels_file).channels)

    def catalog(self) -> Catalog:
        return Catalog(channels=self.channel_names(), templates_dir=self.templates_dir)

    def check_all(self) -> tuple[dict[str, JourneySpec], list[Problem]]:
        """Every journey file, checked: specs by journey name, and all problems found."""
        catalog = self.catalog()
        specs: dict[str, JourneySpec] = {}
        problems: list[Problem] = []
        for path in self.journey_files():
            spec, found = check_journey_file(self._shown(path), catalog)
            problems += found
            if spec is not None and spec.journey in specs:
                problems.append(
                    Problem(
                        str(self._shown(path)),
                        1,
                        1,
                        "duplicate-journey",
                        f"journey name '{spec.journey}' is used by two files",
                    )
                )
            elif spec is not None:
                specs[spec.journey] = spec
        return specs, problems

    def journeys_by_name(self) -> dict[str, tuple[JourneySpec, str]]:
        """Every loadable journey with its file, relative to the project root."""
        catalog = self.catalog()
        found: dict[str, tuple[JourneySpec, str]] = {}
        for path in self.journey_files():
            spec, _ = check_journey_file(path, catalog)
            if spec is not None:
                found[spec.journey] = (spec, str(path.relative_to(self.root)))
        return found

    def journey(self, name: str) -> JourneySpec:
        """The named journey, or SpecError with its file's problems (a journey with any
        problem never runs)."""
        catalog = self.catalog()
        unreadable: list[Problem] = []
        names: list[str] = []
        for path in self.journey_files():
            spec, problems = check_journey_file(self._shown(path), catalog)
            if spec is None:
                unreadable += problems
            elif spec.journey == name:
                if problems:
                    raise SpecError(problems)
                return spec
            else:
                names.append(spec.journey)
        if unreadable:
            raise SpecError(unreadable)
        raise ConfigError(
            f"no journey named '{name}' in {self.journeys_dir}"
            f"{did_you_mean(name, names)} (journeys: {', '.join(names) or 'none'})"
        )

    def _shown(self, path: Path) -> Path:
        """Paths in messages are relative to the current directory when possible."""
        try:
            return path.relative_to(Path.cwd())
        except ValueError:
            return path

    @property
    def policies_file(self) -> Path:
        return self.root / "policies.yaml"

    def policies(self) -> Policies:
        """policies.yaml, plus each channel's platform quota (channels.yaml) as a cap."""
        from siyu.channels.registry import load_channel_config

        policies = load_policies(self.policies_file)
        quotas = [
            Cap(
                name=f"{name}-platform-quota",
                channels=[name],
                max=quota.per_customer,
                per=quota.window,
            )
            for name, quota in load_channel_config(self.channels_file).quotas().items()
        ]
        return policies.model_copy(update={"caps": [*policies.caps, *quotas]})

    def engine_context(
        self, sessions: sessionmaker[Session], channels: dict[str, Channel]
    ) -> EngineContext:
        return EngineContext(sessions, self.templates_dir, channels, policies=self.policies())

    def build_channels(
        self, base_url: str | None = None, *, throttle: bool = True
    ) -> dict[str, Channel]:
        """``throttle=False``: no client-side rate limits, only for the local sandbox."""
        from siyu.channels.registry import build_channels, load_channel_config

        url = base_url or os.environ.get("SIYU_CHANNEL_BASE_URL")
        channels: dict[str, Channel] = build_channels(
            load_channel_config(self.channels_file), base_url=url, throttle=throttle
        )
        return channels


def worker_context(root: str, database_url: str, channel_base_url: str | None) -> EngineContext:
    """The engine context a partition worker process builds for itself
    (tasks/partition_workers.py): the project at `root`, its own engine and channel clients."""
    from db.engine import make_engine, make_sessionmaker

    project = Project(Path(root))
    return project.engine_context(
        make_sessionmaker(make_engine(database_url)), project.build_channels(channel_base_url)
    )
