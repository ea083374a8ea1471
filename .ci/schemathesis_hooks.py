"""Schemathesis hooks for `.ci/schemathesis`: keep the fuzzer from destroying the identities it runs as.

The fuzz run authenticates as one admin key and one node token. A generated (or response-harvested) path id that
names the admin's own account or key, or the fixture provider, would deactivate/revoke it and turn the rest of the
run into 401s. Such ids are swapped, just before the request is sent, for a decoy of the same kind created by the
fixture step. `SCHEMATHESIS_PROTECTED_IDS` maps an operation label to {protected id: decoy id}.
"""

import json
import os

import schemathesis

_PROTECTED: dict[str, dict[str, int]] = json.loads(os.environ.get("SCHEMATHESIS_PROTECTED_IDS", "{}"))


@schemathesis.hook
def before_call(context, case, kwargs):  # type: ignore[no-untyped-def]
    swaps = _PROTECTED.get(f"{case.method.upper()} {case.path}")
    if not swaps or not case.path_parameters:
        return
    value = case.path_parameters.get("id")
    text = str(value).strip()
    # The URL's converter reads "007" or "+7" as 7: compare the id the server will see, not the text sent.
    decoy = swaps.get(str(int(text)) if text.lstrip("+").isdigit() else text)
    if decoy is not None:
        # Keep the generated type: a negative case's string "1" stays a string, so Schemathesis still sees a type
        # mutation that serialises to a valid id rather than a schema-valid integer sent as invalid data.
        case.path_parameters["id"] = str(decoy) if isinstance(value, str) else decoy
