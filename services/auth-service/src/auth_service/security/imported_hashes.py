"""Which imported argon2id hashes the batch import takes: parameters within the configured range.

A stored hash is verified at its own parameters on every login, right or wrong: one imported with
m=4 GiB and t=1000 makes each guess on that account a multi-second, GiB-sized denial of service.
"""

from __future__ import annotations

from argon2 import Parameters, Type, extract_parameters
from argon2.exceptions import InvalidHashError

from auth_service.settings import Settings

ARGON2_VERSION = 19
# libargon2's own minimums: a hash outside them can never verify, so its user could never log in.
MIN_SALT_BYTES = 8
MIN_HASH_BYTES = 4
MIN_MEMORY_PER_LANE_KIB = 8


def import_problem(phc: str, settings: Settings) -> dict[str, str] | None:
    """{code, message} of what is wrong with an imported hash, or None when the service can take it."""
    try:
        parameters = extract_parameters(phc)
    except InvalidHashError:
        return {"code": "invalid_password_hash", "message": "not an argon2id PHC string"}
    if parameters.type is not Type.ID or parameters.version != ARGON2_VERSION:
        return {"code": "invalid_password_hash", "message": "only argon2id, version 19, is imported"}
    if unusable := _unusable(parameters):
        return {"code": "invalid_password_hash", "message": "; ".join(unusable)}
    if out_of_range := _out_of_range(parameters, settings):
        return {"code": "hash_parameters_out_of_range", "message": "; ".join(out_of_range)}
    return None


def _out_of_range(parameters: Parameters, settings: Settings) -> list[str]:
    problems = []
    memory, time_cost = parameters.memory_cost, parameters.time_cost
    if not settings.argon2_import_min_memory_kib <= memory <= settings.argon2_import_max_memory_kib:
        bounds = f"{settings.argon2_import_min_memory_kib}..{settings.argon2_import_max_memory_kib}"
        problems.append(f"m={memory} is outside {bounds} KiB")
    if not settings.argon2_import_min_time_cost <= time_cost <= settings.argon2_import_max_time_cost:
        bounds = f"{settings.argon2_import_min_time_cost}..{settings.argon2_import_max_time_cost}"
        problems.append(f"t={time_cost} is outside {bounds}")
    if not 1 <= parameters.parallelism <= settings.argon2_import_max_parallelism:
        problems.append(f"p={parameters.parallelism} is outside 1..{settings.argon2_import_max_parallelism}")
    return problems


def _unusable(parameters: Parameters) -> list[str]:
    problems = []
    if parameters.memory_cost < MIN_MEMORY_PER_LANE_KIB * parameters.parallelism:
        problems.append(f"m must be at least {MIN_MEMORY_PER_LANE_KIB} KiB per lane")
    if parameters.salt_len < MIN_SALT_BYTES:
        problems.append(f"the salt must have at least {MIN_SALT_BYTES} bytes")
    if parameters.hash_len < MIN_HASH_BYTES:
        problems.append(f"the hash must have at least {MIN_HASH_BYTES} bytes")
    return problems
