"""Where a siyu project's parts are: journeys/, templates/, channels.yaml and the database.

Everything is found relative to the project directory: `SIYU_PROJECT_DIR`, else the current
directory (a Prefect process worker runs flows from the repository's root).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from siyu.channels.base import Channel
from siyu.channels.ratelimit import LimiterFactory  # stdlib only: no cost to a CLI start
from siyu.channels.tokens import TokenCaches  # stdlib only: no cost to a CLI start
from siyu.engine.context import EngineContext
from siyu.errors import ConfigError
from siyu.language.loader import check_journey_file, read_journey_yaml
from siyu.language.problems import Problem, SpecError, did_you_mean
from siyu.language.project_files import Refused, read_source
from siyu.language.references import Catalog
from siyu.language.spec import JourneySpec
from siyu.policies import Cap, Policies, load_policies
from siyu.settings import settings


@dataclass(frozen=True)
class Project:
    root: Path

    @classmethod
    def find(cls, root: Path | None = None) -> Project:
        base = root or settings().project_dir or Path.cwd()
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
        # deferred: the adapters and httpx cost ~0.1 s of every CLI start
        from siyu.channels.registry import load_channel_config

        return set(load_channel_config(self.channels_file).channels)

    def catalog(self) -> Catalog:
        return Catalog(channels=self.channel_names(), templates_dir=self.templates_dir)

    def check_all(self) -> tuple[dict[str, JourneySpec], list[Problem]]:
        """Every journey file, checked: specs by journey name, and all problems found. A name
        two files use is a problem in both files, and neither file's journey is returned."""
        catalog = self.catalog()
        by_name: dict[str, list[tuple[Path, JourneySpec]]] = {}
        problems: list[Problem] = []
        for path in self.journey_files():
            shown = self._shown(path)
            spec, found = check_journey_file(shown, catalog, self.journeys_dir)
            problems += found
            if spec is not None:
                by_name.setdefault(spec.journey, []).append((shown, spec))
        specs: dict[str, JourneySpec] = {}
        for name, entries in by_name.items():
            if len(entries) == 1:
                specs[name] = entries[0][1]
                continue
            files = [str(shown) for shown, _ in entries]
            problems += [
                Problem(file, 1, 1, "duplicate-journey", duplicate_name(name, files))
                for file in files
            ]
        return specs, problems

    def journeys_by_name(self) -> dict[str, tuple[JourneySpec, str]]:
        """Every loadable journey with its file, relative to the project root. A name two
        files use is left out (which one is meant is not for the file order to say;
        check_all reports it)."""
        catalog = self.catalog()
        found: dict[str, tuple[JourneySpec, str]] = {}
        duplicated: set[str] = set()
        for path in self.journey_files():
            spec, _ = check_journey_file(self._shown(path), catalog, self.journeys_dir)
            if spec is None:
                continue
            if spec.journey in found:
                duplicated.add(spec.journey)
            found[spec.journey] = (spec, str(path.relative_to(self.root)))
        return {name: entry for name, entry in found.items() if name not in duplicated}

    def journey_file(self, name: str) -> Path:
        """The one file of journey `name`. Only each file's `journey:` key is read, so a broken
        file, or a broken template, of another journey never stops this one. Two files with
        the name: ConfigError naming both, until one is renamed."""
        files: list[Path] = []
        names: list[str] = []
        unreadable: list[Problem] = []
        for path in self.journey_files():
            shown = self._shown(path)
            found, problems = self._journey_name(shown)
            if found == name:
                files.append(shown)
            elif found is not None:
                names.append(found)
            else:
                unreadable += problems
        if len(files) > 1:
            raise ConfigError(duplicate_name(name, [str(f) for f in files]))
        if files:
            return files[0]
        if unreadable:  # the journey may be in a file that cannot be read
            raise SpecError(unreadable)
        raise ConfigError(
            f"no journey named '{name}' in {self.journeys_dir}"
            f"{did_you_mean(name, names)} (journeys: {', '.join(sorted(names)) or 'none'})"
        )

    def journey(self, name: str) -> JourneySpec:
        """The named journey, or SpecError with its file's problems (a journey with any
        problem never runs)."""
        path = self.journey_file(name)
        spec, problems = check_journey_file(path, self.catalog(), self.journeys_dir)
        if problems or spec is None:
            raise SpecError(problems)
        if spec.journey != name:  # the file changed since it was looked at
            raise ConfigError(f"{path} no longer holds journey '{name}'; run again")
        return spec

    def files_named(self, name: str) -> list[Path]:
        """The journey files whose `journey:` is `name`, read as cheaply as journey_file
        reads them (a file that cannot be read names nothing)."""
        return [p for p in self.journey_files() if self._journey_name(p)[0] == name]

    def _journey_name(self, path: Path) -> tuple[str | None, list[Problem]]:
        """A journey file's `journey:` name without checking the rest of it: its top-level
        `journey: name` line (cheap, and works when the YAML does not parse), else the YAML."""
        try:
            text = read_source(self.journeys_dir, path)
        except Refused as refused:
            return None, [Problem(str(path), 0, 0, refused.code, refused.message)]
        found = set(_NAME_LINE.findall(text))
        if len(found) == 1:
            return found.pop(), []
        raw, problems = read_journey_yaml(path, self.journeys_dir)
        value = raw.get("journey") if raw is not None else None
        return (str(value) if isinstance(value, str) else None), problems

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
        # deferred: the adapters and httpx cost ~0.1 s of every CLI start
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
        return EngineContext(
            sessions,
            self.templates_dir,
            channels,
            batch_size=settings().batch_size,
            late_events=timedelta(hours=settings().late_events_hours),
            policies=self.policies(),
        )

    def build_channels(
        self,
        base_url: str | None = None,
        *,
        throttle: bool = True,
        token_caches: TokenCaches | None = None,
        rate_limits: LimiterFactory | None = None,
    ) -> dict[str, Channel]:
        """``throttle=False``: no client-side rate limits, only for the local sandbox.
        ``token_caches``: where access tokens are kept, and ``rate_limits``: who counts the
        channels' rate limits (siyu.channels.token_store's and rate_store's are shared through
        the database); default: this call's own."""
        # deferred: the adapters and httpx cost ~0.1 s of every CLI start
        from siyu.channels.ratelimit import own_limiter
        from siyu.channels.registry import build_channels, load_channel_config

        url = base_url or settings().channel_base_url
        channels: dict[str, Channel] = build_channels(
            load_channel_config(self.channels_file),
            base_url=url,
            throttle=throttle,
            token_caches=token_caches,
            rate_limits=rate_limits or own_limiter,
        )
        return channels


_NAME_LINE = re.compile(r"""^journey:[ \t]*['"]?([A-Za-z0-9_-]+)['"]?[ \t]*(?:#.*)?$""", re.M)


def duplicate_name(name: str, files: list[str]) -> str:
    return (
        f"journey name '{name}' is used by {len(files)} files: {', '.join(files)}; "
        "rename one (its `journey:` key) — nothing runs under this name until then"
    )


def worker_context(
    root: str, database_url: str, channel_base_url: str | None, throttle: bool = True
) -> EngineContext:
    """The engine context a partition worker process builds for itself
    (siyu/engine/partition_workers.py): the project at `root`, its own engine and channel
    clients, access tokens and rate limits shared with every process on the database."""
    from siyu.channels.rate_store import shared_rate_limits
    from siyu.channels.token_store import shared_token_caches
    from siyu.storage.engine import make_engine, make_sessionmaker

    project = Project(Path(root))
    sessions = make_sessionmaker(make_engine(database_url))
    channels = project.build_channels(
        channel_base_url,
        throttle=throttle,  # the flow's: off only for the local sandbox
        token_caches=shared_token_caches(sessions),
        rate_limits=shared_rate_limits(sessions),
    )
    return project.engine_context(sessions, channels)
