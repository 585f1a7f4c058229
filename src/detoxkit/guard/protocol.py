"""The OpenAI API's shapes as the guard speaks them: request schemas (strict types), JSON bodies parsed by stated
rules, and the error body ``{"error": {"message", "type", "param", "code"}}``.

Input rules: the body must be UTF-8 JSON without NaN/Infinity, and a lone UTF-16 surrogate escape (``"\\ud800"``)
is rejected (400 ``invalid_unicode``) rather than replaced, so the text the judge sees is the text the client sent.
Field types are strict (``max_tokens: true`` or ``"5"`` is a 400).
"""

from __future__ import annotations

import json
import re
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class _Strict(BaseModel):
    # OpenAI clients send fields this server does not use (ignored); the ones it uses are typed strictly.
    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart]]

    def plain(self) -> dict:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatRequest(_Strict):
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=1)
    stream: bool = False


class ModerationRequest(_Strict):
    input: Union[str, list[str]]
    model: Optional[str] = None


def _validation_error(e: ValidationError) -> APIError:
    err = e.errors()[0]
    param = ".".join(str(x) for x in err["loc"]) or None
    return APIError(400, f"{param}: {err['msg']}" if param else err["msg"], param=param, code="invalid_value")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _lone_surrogate_at(data) -> str | None:
    """The path (e.g. "messages.0.content") of the first string holding a lone surrogate, walked without recursion."""
    stack = [("", data)]
    while stack:
        path, node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            sub = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and not _valid_unicode(k):
                return path or "(body)"
            if isinstance(v, str):
                if not _valid_unicode(v):
                    return sub
            elif isinstance(v, (dict, list)):
                stack.append((sub, v))
    return None


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_json_body(body: bytes):
    """A request body -> JSON value, or a 400 that says what is wrong (encoding, syntax, depth, surrogates)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise APIError(
            400, f"the request body is not valid UTF-8 (byte {e.start}: {e.reason})", code="invalid_json"
        ) from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise APIError(400, "the JSON body is nested too deeply", code="invalid_json") from None
    except ValueError as e:
        raise APIError(400, f"We could not parse the JSON body of your request: {e}", code="invalid_json") from None
    if _SURROGATE_ESCAPE.search(text) and (where := _lone_surrogate_at(data)) is not None:
        raise APIError(
            400,
            f"{where}: holds a lone UTF-16 surrogate escape (such as \\ud800), which is not valid "
            "Unicode; send well-formed text",
            param=where,
            code="invalid_unicode",
        )
    return data


def validate(schema, body: bytes):
    """A request body -> the schema's model, or a 400 naming the field at fault."""
    try:
        return schema.model_validate(parse_json_body(body))
    except ValidationError as e:
        raise _validation_error(e) from None
    except RecursionError:
        raise APIError(400, "the JSON body is nested too deeply", code="invalid_json") from None
