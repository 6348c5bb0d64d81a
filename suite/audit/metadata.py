"""Provenance an image declares about itself, as structured fields.

Everything here is attacker-controlled text: it is parsed as data (JSON, `key: value` lines,
regular expressions over XMP; never an XML parser with entity expansion, never evaluated),
truncated, and reported as what the file *claims*, not as a verdict. The watermark test is the
evidence; these fields are context for it.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

from PIL import Image

MAX_TEXT = 2000  # characters kept of any one value
MAX_ITEMS = 50  # entries kept of any list

# IPTC's DigitalSourceType codes that declare generative AI.
AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia"})

_EXIF_BASE = {
    0x0131: "Software",
    0x010E: "ImageDescription",
    0x013B: "Artist",
    0x010F: "Make",
    0x0110: "Model",
}
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
# A1111's own pattern for its `key: value, key: "quoted, value"` settings line.
_A1111_SETTING = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_XMP_SOURCE_TYPE = re.compile(r'DigitalSourceType\s*(?:=\s*["\']([^"\']*)["\']|>\s*([^<\s]*)\s*<)')
_XMP_CREATOR_TOOL = re.compile(r'CreatorTool\s*(?:=\s*["\']([^"\']*)["\']|>\s*([^<]*?)\s*<)')
_TEXT_KEYS_PARSED = {"parameters", "prompt", "workflow", "invokeai_metadata", "sd-metadata", "Dream"}


def _clip(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "…"
    return value


def _scalars(data: Any) -> dict[str, Any]:
    """The scalar top-level fields of a JSON object (nested structure is dropped, not interpreted)."""
    if not isinstance(data, dict):
        return {}
    items = [(str(k), _clip(v)) for k, v in data.items() if isinstance(v, (str, int, float, bool)) or v is None]
    return dict(items[:MAX_ITEMS])


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def parse_a1111(text: str) -> dict[str, Any]:
    """AUTOMATIC1111's `parameters`: prompt, `Negative prompt: ...`, then `Steps: ..., Seed: ...`."""
    lines = text.strip().split("\n")
    settings: dict[str, str] = {}
    if lines and _A1111_SETTING.match(lines[-1]) and "Steps:" in lines[-1]:
        for key, value in _A1111_SETTING.findall(lines.pop()):
            settings[key.strip()] = _clip(value.strip().strip('"'))
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    out: dict[str, Any] = {"prompt": _clip("\n".join(prompt).strip())}
    if in_negative:
        out["negative_prompt"] = _clip("\n".join(negative).strip())
    if settings:
        out["settings"] = dict(list(settings.items())[:MAX_ITEMS])
    return out


def parse_comfyui(prompt: str | None, workflow: str | None) -> dict[str, Any]:
    """ComfyUI's API graph (`prompt`) and editor graph (`workflow`): node types and model names only."""
    out: dict[str, Any] = {}
    graph = _json(prompt) if prompt else None
    if isinstance(graph, dict):
        nodes = [n for n in graph.values() if isinstance(n, dict)]
        types = sorted({str(n.get("class_type")) for n in nodes if n.get("class_type")})
        models, texts = set(), []
        for node in nodes:
            inputs = node.get("inputs") if isinstance(node.get("inputs"), dict) else {}
            for key in ("ckpt_name", "unet_name", "model_name", "lora_name"):
                if isinstance(inputs.get(key), str):
                    models.add(_clip(inputs[key]))
            if "CLIPTextEncode" in str(node.get("class_type")) and isinstance(inputs.get("text"), str):
                texts.append(_clip(inputs["text"]))
        out.update(nodes=len(nodes), node_types=types[:MAX_ITEMS], models=sorted(models)[:MAX_ITEMS])
        if texts:
            out["prompts"] = texts[:MAX_ITEMS]
    editor = _json(workflow) if workflow else None
    if isinstance(editor, dict) and isinstance(editor.get("nodes"), list):
        out["workflow_nodes"] = len(editor["nodes"])
    return out


def parse_text_chunks(text: dict[str, str]) -> dict[str, Any]:
    """PNG tEXt/zTXt/iTXt chunks of the known generators, then every other key as plain text."""
    out: dict[str, Any] = {}
    if "parameters" in text:
        out["a1111"] = parse_a1111(text["parameters"])
    if "prompt" in text or "workflow" in text:
        comfy = parse_comfyui(text.get("prompt"), text.get("workflow"))
        if comfy:
            out["comfyui"] = comfy
    for key in ("invokeai_metadata", "sd-metadata"):
        if key in text:
            out["invokeai"] = _scalars(_json(text[key])) or {"raw": _clip(text[key])}
    if "Dream" in text:
        out.setdefault("invokeai", {})["dream"] = _clip(text["Dream"])
    if "NovelAI" in text.get("Software", "") or ("Comment" in text and "NovelAI" in text.get("Source", "")):
        novelai = _scalars(_json(text.get("Comment", "")))
        out["novelai"] = {"source": _clip(text.get("Source", "")), **novelai}
    parsed = _TEXT_KEYS_PARSED | ({"Comment"} if "novelai" in out else set()) | {"XML:com.adobe.xmp"}
    rest = {k: _clip(v) for k, v in text.items() if k not in parsed}
    if rest:
        out["text"] = dict(list(rest.items())[:MAX_ITEMS])
    return out


def decode_user_comment(raw: bytes | str) -> str:
    """EXIF UserComment: an 8-byte charset tag, then the text (A1111 writes UTF-16 `UNICODE`)."""
    if isinstance(raw, str):
        return raw
    head, body = raw[:8], raw[8:]
    if head.startswith(b"UNICODE"):
        big_endian = len(body) > 1 and body[0] == 0
        return body.decode("utf-16-be" if big_endian else "utf-16-le", errors="replace").rstrip("\0")
    if head.startswith(b"ASCII") or head == b"\0" * 8:
        return body.decode("ascii", errors="replace").rstrip("\0")
    return raw.decode("utf-8", errors="replace").rstrip("\0")


def parse_exif(image: Image.Image) -> dict[str, Any]:
    exif = image.getexif()
    out = {name: _clip(str(exif[tag]).rstrip("\0")) for tag, name in _EXIF_BASE.items() if exif.get(tag)}
    comment = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    if comment:
        out["UserComment"] = _clip(decode_user_comment(comment))
    return out


def parse_xmp(xmp: bytes | str) -> dict[str, Any]:
    text = xmp.decode("utf-8", errors="replace") if isinstance(xmp, bytes) else xmp
    out: dict[str, Any] = {}
    types = [(a or b).rsplit("/", 1)[-1] for a, b in _XMP_SOURCE_TYPE.findall(text) if a or b]
    if types:
        out["digital_source_type"] = types[0]
    tools = [a or b for a, b in _XMP_CREATOR_TOOL.findall(text) if a or b]
    if tools:
        out["creator_tool"] = _clip(tools[0])
    return out


def parse_c2pa(data: bytes, mime: str) -> dict[str, Any]:
    """The active C2PA manifest: claim generator, actions, signer and validation state.

    Remote manifests and OCSP are not fetched: auditing a file must not make it phone out.
    """
    import c2pa

    context = c2pa.Context.from_dict({"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}})
    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data), context=context)
        if reader is None:
            return {}
        with reader:
            store = json.loads(reader.json())
            state = reader.get_validation_state()
    except (c2pa.C2paError, ValueError) as exc:
        return {"error": _clip(f"{type(exc).__name__}: {exc}")}
    manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
    generators = [g.get("name") for g in manifest.get("claim_generator_info", []) if isinstance(g, dict)]
    actions = []
    for assertion in manifest.get("assertions", []):
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in assertion.get("data", {}).get("actions", [])[:MAX_ITEMS]:
                agent = action.get("softwareAgent")
                actions.append(
                    {
                        "action": _clip(action.get("action")),
                        "digital_source_type": _clip(str(action.get("digitalSourceType", "")).rsplit("/", 1)[-1])
                        or None,
                        "software_agent": _clip(agent.get("name") if isinstance(agent, dict) else agent),
                    }
                )
    signature = manifest.get("signature_info", {})
    return {
        "claim_generator": _clip(manifest.get("claim_generator") or ", ".join(filter(None, generators))),
        "title": _clip(manifest.get("title")),
        "actions": actions,
        "signer": _clip(signature.get("issuer") or signature.get("common_name")),
        "validation_state": state,
        "validation_issues": sorted({s.get("code") for s in store.get("validation_status", []) if s.get("code")}),
    }


def _mime(image: Image.Image) -> str:
    return Image.MIME.get(image.format or "", "application/octet-stream")


def extract(image: Image.Image, data: bytes) -> dict[str, Any]:
    """All provenance fields of an opened image; `data` is the file's bytes (for C2PA).

    For a PNG whose text or EXIF may follow the pixels, pass it loaded: PIL reads those chunks only then.
    """
    out: dict[str, Any] = {"format": image.format, "mode": image.mode}
    text = {str(k): v for k, v in image.info.items() if isinstance(v, str)}
    if image.format == "PNG":
        out.update(parse_text_chunks(text))
    # a PNG's getexif() decodes the whole image to look past the pixels: the caller loads it first
    # where chunks follow them (see suite.audit.png), so only what PIL has seen is read here
    exif = parse_exif(image) if image.format != "PNG" or "exif" in image.info else {}
    if exif:
        out["exif"] = exif
        comment = exif.get("UserComment", "")
        if "Steps:" in comment:  # A1111 stores its parameters here in JPEG and WebP
            out.setdefault("a1111", parse_a1111(comment))
    xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
    if xmp:
        parsed = parse_xmp(xmp)
        if parsed:
            out["xmp"] = parsed
    if b"c2pa" in data:  # the JUMBF label of a manifest store; the SDK is asked only then
        manifest = parse_c2pa(data, _mime(image))
        if manifest:
            out["c2pa"] = manifest
    claims = ai_claims(out)
    if claims:
        out["ai_claims"] = claims
    return out


def ai_claims(metadata: dict[str, Any]) -> list[str]:
    """Which fields declare the image machine-generated (a summary; each is only a claim)."""
    claims = [name for name in ("a1111", "comfyui", "invokeai", "novelai") if name in metadata]
    if metadata.get("xmp", {}).get("digital_source_type") in AI_SOURCE_TYPES:
        claims.append("xmp")
    actions = metadata.get("c2pa", {}).get("actions", [])
    if any(a.get("digital_source_type") in AI_SOURCE_TYPES for a in actions):
        claims.append("c2pa")
    return claims
