"""aiogram imported with its models built on first use parses exactly as the eager import does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).parents[1] / "fixtures" / "telegram"

# Parses every fixture in a fresh interpreter, after importing aiogram one way or the other,
# and prints what each parse gave back; the Response[...] types are the answers of the
# methods tgrelay calls (telegram/client.py), each parsed first, as it is in a running hub.
PARSE_EVERY_FIXTURE = """
import json, sys
from pathlib import Path
if sys.argv[1] == "deferred":
    from tgrelay.telegram import aiogram_loading
    aiogram_loading.import_aiogram()
else:
    import aiogram
from aiogram.methods.base import Response
from aiogram.types import ForumTopic, Message, Update, User, WebhookInfo
complete = Update.__pydantic_complete__
ANSWERS = {
    "getUpdates": Response[list[Update]],
    "sendMessage": Response[Message],
    "getMe": Response[User],
    "getWebhookInfo": Response[WebhookInfo],
    "createForumTopic": Response[ForumTopic],
}
parsed = {}
for path in sorted(Path(sys.argv[2]).glob("*.json")):
    body = json.loads(path.read_text())
    if path.name.startswith("update_"):
        answer = Response[list[Update]].model_validate({"ok": True, "result": [body]})
        parsed[path.name] = answer.model_dump(mode="json", exclude_unset=True, by_alias=True)
        update = Update.model_validate_json(path.read_text())
        parsed[path.name + " alone"] = update.model_dump(mode="json", exclude_unset=True)
        if update.message is not None:
            sent = Response[Message].model_validate({"ok": True, "result": body["message"]})
            parsed[path.name + " sent"] = sent.model_dump(mode="json", exclude_unset=True)
    elif path.name.startswith("response_getMe"):
        parsed[path.name] = ANSWERS["getMe"].model_validate(body).model_dump(mode="json")
    elif path.name.startswith("response_getWebhookInfo"):
        parsed[path.name] = ANSWERS["getWebhookInfo"].model_validate(body).model_dump(mode="json")
topic = {"ok": True, "result": {"message_thread_id": 7, "name": "#1", "icon_color": 7322096}}
parsed["createForumTopic"] = ANSWERS["createForumTopic"].model_validate(topic).model_dump(mode="json")
print(json.dumps({"built_at_import": complete, "parsed": parsed}, sort_keys=True))
"""


def parse_fixtures(how: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", PARSE_EVERY_FIXTURE, how, str(FIXTURES)],
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, object] = json.loads(result.stdout)
    return found


def test_deferred_models_parse_every_fixture_as_the_eager_import_does() -> None:
    """Every update and answer fixture parses to the same objects either way; only the deferred import leaves Update unbuilt until then."""
    deferred, eager = parse_fixtures("deferred"), parse_fixtures("eager")
    assert (deferred["built_at_import"], eager["built_at_import"]) == (False, True)
    assert deferred["parsed"] == eager["parsed"]
    assert len(eager["parsed"]) >= 20  # type: ignore[arg-type]


# Builds every model aiogram defines the way pydantic does on first use (from the model's own
# names only: no caller's namespace), and prints those that fail.
BUILD_EVERY_MODEL = """
from tgrelay.telegram import aiogram_loading
aiogram_loading.import_aiogram()
failed = []
models = aiogram_loading._models_of_aiogram()
for cls in models:
    if cls.__pydantic_generic_metadata__["parameters"]:
        continue  # Response[T] itself: built once parametrised, as answers show above
    try:
        cls.model_rebuild(force=True, _parent_namespace_depth=0)
    except Exception as exc:
        failed.append(f"{cls.__module__}.{cls.__qualname__}: {type(exc).__name__}")
print(len(models))
print("\\n".join(failed))
"""


def test_every_aiogram_model_builds_on_first_use() -> None:
    """Each of aiogram's types and methods (SendMessage, say) finds every name it refers to when pydantic builds it late."""
    result = subprocess.run(
        [sys.executable, "-c", BUILD_EVERY_MODEL], capture_output=True, text=True, check=True
    )
    counted, *failed = result.stdout.splitlines()
    assert int(counted) > 400
    assert [line for line in failed if line] == []
