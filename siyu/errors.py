"""Exception families. User errors (a bad journey file, a missing template, an unreachable
database) are printed as plain messages without a traceback; anything else is a bug.

    SiyuError                 user-facing; the CLI prints str(error) and exits 1
    ├── SpecError             one or more problems in journey files (carries Problem list;
    │                         defined with Problem in siyu.language.problems)
    ├── TemplateNotFound      a template a step names does not exist
    └── ConfigError           bad settings, channels file, environment
"""

from __future__ import annotations


class SiyuError(Exception):
    """An error the user caused and can fix; shown without a traceback."""


class TemplateNotFound(SiyuError):
    pass


class ConfigError(SiyuError):
    pass
