"""What a provider needs from the environment to authenticate, checked before any client is built.

`router validate` reports every missing piece at once, each at its provider in the file, instead
of the first one failing when the router starts.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from collections.abc import Mapping

from router.policy.model import ProviderSpec
from router.providers.registry import PROVIDER_TYPES

__all__ = ["missing_credentials"]

_AWS_PAIR = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def missing_credentials(spec: ProviderSpec, environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """What `environ` lacks for this provider, as (field of the provider, message) pairs.

    An API key the policy does not give must be in the type's variable; AWS credentials taken from
    the environment must come as a pair (the rest of the AWS chain, a profile or an instance role,
    cannot be judged from here); a service-account key file named in the policy must be there
    (unless a key stands in for it); the SDK the type's adapter imports must be installed (looked up,
    not imported: clients are built on first use). Messages name variables and files, never values.
    """
    entry = PROVIDER_TYPES[spec.type]
    problems: list[tuple[str, str]] = []
    if entry.sdk is not None and not _installed(entry.sdk[0]):
        module, extra = entry.sdk
        needed = f"a {spec.type} provider needs the {module} package: pip install 'router[{extra}]'"
        problems.append(("type", needed))
    variable = entry.key_variable
    if variable and not spec.api_key_values() and not environ.get(variable):
        problems.append(
            ("api_key", f"no API key: set api_key in the policy or {variable} in the environment")
        )
    key_file = spec.credentials_file
    if key_file and not spec.api_key_values() and not os.path.isfile(key_file):
        problems.append(("credentials_file", f"no such file: {key_file} (a service-account key file)"))
    takes_aws = "aws_access_key_id" in entry.takes
    if takes_aws and not (spec.aws_access_key_id or spec.aws_secret_access_key):
        present = [name for name in _AWS_PAIR if environ.get(name)]
        if len(present) == 1:
            [absent] = [name for name in _AWS_PAIR if name not in present]
            problems.append(
                (
                    "aws_secret_access_key" if absent == _AWS_PAIR[1] else "aws_access_key_id",
                    f"half a set of AWS credentials: {present[0]} is set in the environment but {absent} "
                    "is not",
                )
            )
    return problems


def _installed(module: str) -> bool:
    """Whether `module` is there to import, found without importing it or its parents (`google`)."""
    if module in sys.modules:
        return True
    path = None
    for part in module.split("."):
        spec = importlib.machinery.PathFinder.find_spec(part, path)
        if spec is None:
            return False
        path = spec.submodule_search_locations
    return True
