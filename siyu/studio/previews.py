"""Each step's message as the studio shows it: rendered by `siyu preview`'s code for a few
customers of the database (masked there, siyu.preview.masking), per variant, on the step's
channel, with the channel's length limit and, for SMS, the billed parts and the content
rules' signature and opt-out checks (siyu.language.lint). Without a database, or with no
customers in it, the sample customer stands in and the page says so."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import inspect, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from siyu.engine.render import MessageLimit, message_limit
from siyu.errors import SiyuError
from siyu.language.channel_kinds import channel_kinds
from siyu.language.lint import sms_problems
from siyu.language.lint_config import LintConfig, load_lint_config
from siyu.language.problems import Problem
from siyu.language.spec import JourneySpec, Step, Variant
from siyu.preview.masking import mask_text
from siyu.preview.render_preview import Preview, preview_customer, preview_sample
from siyu.project import Project
from siyu.storage.engine import make_sessionmaker
from siyu.storage.models import Customer, Enrollment
from siyu.studio.database import existing_database

SAMPLE_CUSTOMERS = 2
# Carriers bill a message of up to 70 characters as one SMS; a longer one goes in parts of
# 67 (the rest is the header joining the parts). The signature counts.
SMS_SINGLE, SMS_PART = 70, 67


@dataclass(frozen=True)
class Addressing:
    """What message_limit needs to know of a channel: whom it addresses."""

    identity_kind: str | None


@dataclass(frozen=True)
class MessagePreview:
    step: Step
    variant: str | None
    kind: str | None  # whom the channel addresses; None: no such channel
    preview: Preview
    limit: MessageLimit
    sms: bool
    checks: list[Problem]  # the SMS content rules this message breaks (none: it passes)

    @property
    def too_long(self) -> str | None:
        return self.limit.problem("x" * self.preview.length) if self.preview.body else None

    @property
    def sms_parts(self) -> int:
        length = self.preview.length
        return 1 if length <= SMS_SINGLE else -(-length // SMS_PART)


@dataclass(frozen=True)
class Previews:
    messages: list[MessagePreview]
    source: str  # "customers" | "no-database" | "no-customers" | "unchecked"


def journey_previews(
    project: Project, spec: JourneySpec, database_url: str | None, valid: bool = True
) -> Previews:
    """Every step and variant of `spec`, for a few customers or the sample customer. A text
    with problems (`valid` False) is previewed for the sample customer only: its SQL (the
    entry's `where`, which finds a customer's entry event) has not passed the check, and
    nothing that has not runs on the database."""
    config: LintConfig | None
    try:
        kinds = channel_kinds(project)
        config = load_lint_config(project.root)
    except SiyuError:
        kinds, config = {}, None  # channels.yaml or lint.yaml broken: the problems say so
    if not valid:
        return Previews(_render_all(project, spec, None, [], kinds, config), "unchecked")
    engine = existing_database(database_url)
    if engine is None:
        return Previews(_render_all(project, spec, None, [], kinds, config), "no-database")
    try:
        with make_sessionmaker(engine)() as session:
            if not inspect(session.get_bind()).has_table("customers"):
                return Previews(_render_all(project, spec, None, [], kinds, config), "no-database")
            ids = _sample_customers(session, spec)
            source = "customers" if ids else "no-customers"
            return Previews(_render_all(project, spec, session, ids, kinds, config), source)
    except SQLAlchemyError:
        return Previews(_render_all(project, spec, None, [], kinds, config), "no-database")
    finally:
        engine.dispose()


def _sample_customers(session: Session, spec: JourneySpec) -> list[int]:
    """Customers this journey enrolled first (their entry event is real), else the first."""
    enrolled = session.scalars(
        select(Enrollment.customer_id)
        .where(Enrollment.journey_name == spec.journey)
        .order_by(Enrollment.customer_id)
        .distinct()
        .limit(SAMPLE_CUSTOMERS)
    ).all()
    if enrolled:
        return list(enrolled)
    return list(
        session.scalars(select(Customer.id).order_by(Customer.id).limit(SAMPLE_CUSTOMERS)).all()
    )


def _render_all(
    project: Project,
    spec: JourneySpec,
    session: Session | None,
    customers: list[int],
    kinds: dict[str, str],
    rules: LintConfig | None,
) -> list[MessagePreview]:
    found: list[MessagePreview] = []
    for step in spec.steps:
        variants: list[Variant | None] = [*step.variants] if step.variants else [None]
        for variant in variants:
            template = (variant.template if variant else None) or step.template
            shown = step.model_copy(update={"template": template})
            for preview in _render_step(project, spec, shown, session, customers):
                kind = kinds.get(step.send)
                sms = rules is not None and step.send in rules.sms_channels
                checks = (
                    list(sms_problems(step, Path(template), preview.body, rules))
                    if sms and rules is not None and preview.body
                    else []
                )
                found.append(
                    MessagePreview(
                        step,
                        variant.id if variant else None,
                        kind,
                        preview,
                        message_limit(Addressing(kind)),
                        sms,
                        checks,
                    )
                )
    return found


def _render_step(
    project: Project,
    spec: JourneySpec,
    step: Step,
    session: Session | None,
    customers: list[int],
) -> list[Preview]:
    if session is None or not customers:
        return [preview_sample(spec, step, project.templates_dir)]
    rendered: list[Preview] = []
    for customer in customers:
        try:
            rendered.append(
                preview_customer(session, spec, step, project.templates_dir, str(customer))
            )
        except (SiyuError, SQLAlchemyError) as error:  # the journey's own SQL, a lost row
            session.rollback()
            what = f"customer {customer}: cannot be previewed ({type(error).__name__})"
            reason = mask_text((str(error).splitlines() or [""])[0][:200])
            rendered.append(Preview(step, what, None, reason))
    return rendered
