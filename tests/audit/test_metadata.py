import datetime
import io
import json

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from suite.audit.metadata import MAX_TEXT, extract, parse_a1111

A1111 = (
    "a castle on a hill, golden hour\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 512x512, Model hash: 6ce0161689, "
    'Model: v1-5-pruned-emaonly, Lora hashes: "a: 1, b: 2", Version: v1.6.0'
)
AI_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
    'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="DreamStudio" '
    f'Iptc4xmpExt:DigitalSourceType="{AI_TYPE}"/></rdf:RDF></x:xmpmeta>'
)


def _png(info: PngInfo) -> tuple[Image.Image, bytes]:
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), (30, 60, 90)).save(buffer, "PNG", pnginfo=info)
    return Image.open(io.BytesIO(buffer.getvalue())), buffer.getvalue()


def _text_png(**chunks: str) -> dict:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value, zip=key == "workflow")
    return extract(*_png(info))


def test_a1111_parameters_are_split_into_fields():
    parsed = parse_a1111(A1111)
    assert parsed["prompt"] == "a castle on a hill, golden hour"
    assert parsed["negative_prompt"] == "blurry, lowres"
    assert parsed["settings"]["Seed"] == "1234"
    assert parsed["settings"]["Model"] == "v1-5-pruned-emaonly"
    assert parsed["settings"]["Lora hashes"] == "a: 1, b: 2"
    meta = _text_png(parameters=A1111)
    assert meta["a1111"] == parsed
    assert meta["ai_claims"] == ["a1111"]


def test_comfyui_graphs_give_node_types_and_models_only():
    prompt = {
        "3": {"class_type": "KSampler", "inputs": {"seed": 5, "model": ["4", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["4", 1]}},
    }
    meta = _text_png(prompt=json.dumps(prompt), workflow=json.dumps({"nodes": [{}, {}, {}]}))
    assert meta["comfyui"] == {
        "nodes": 3,
        "node_types": ["CLIPTextEncode", "CheckpointLoaderSimple", "KSampler"],
        "models": ["sd_xl_base_1.0.safetensors"],
        "prompts": ["a red fox"],
        "workflow_nodes": 3,
    }


def test_invokeai_and_novelai_chunks():
    invoke = _text_png(invokeai_metadata=json.dumps({"positive_prompt": "a cat", "seed": 7, "model": {"x": 1}}))
    assert invoke["invokeai"] == {"positive_prompt": "a cat", "seed": 7}  # nested values are dropped
    novel = _text_png(
        Software="NovelAI", Source="Stable Diffusion 1D44365E", Comment=json.dumps({"steps": 28, "uc": "bad"})
    )
    assert novel["novelai"] == {"source": "Stable Diffusion 1D44365E", "steps": 28, "uc": "bad"}
    assert novel["text"] == {"Software": "NovelAI", "Source": "Stable Diffusion 1D44365E"}
    assert novel["ai_claims"] == ["novelai"]


def test_hostile_chunks_are_data_not_code():
    deep = "[" * 100_000 + "]" * 100_000
    meta = _text_png(prompt=deep, invokeai_metadata="{not json", Title="x" * (MAX_TEXT * 3))
    assert "comfyui" not in meta
    assert meta["invokeai"] == {"raw": "{not json"}
    assert len(meta["text"]["Title"]) == MAX_TEXT + 1


def test_exif_user_comment_from_a1111_jpeg():
    exif = Image.Exif()
    exif[0x0131] = "AUTOMATIC1111"
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + A1111.encode("utf-16-be")
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256)).save(buffer, "JPEG", exif=exif)
    meta = extract(Image.open(io.BytesIO(buffer.getvalue())), buffer.getvalue())
    assert meta["exif"]["Software"] == "AUTOMATIC1111"
    assert meta["exif"]["UserComment"] == A1111
    assert meta["a1111"]["settings"]["Steps"] == "20"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_xmp_digital_source_type(fmt):
    buffer = io.BytesIO()
    image = Image.new("RGB", (256, 256))
    if fmt == "PNG":
        info = PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP)
        image.save(buffer, fmt, pnginfo=info)
    else:
        image.save(buffer, fmt, xmp=XMP.encode())
    meta = extract(Image.open(io.BytesIO(buffer.getvalue())), buffer.getvalue())
    assert meta["xmp"] == {"digital_source_type": "trainedAlgorithmicMedia", "creator_tool": "DreamStudio"}
    assert meta["ai_claims"] == ["xmp"]


def _signer():
    """A throwaway ES256 certificate chain (CA + signer), as C2PA requires, and its signer."""
    import c2pa
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common):
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sdsuite tests"),
            ]
        )

    def usage(sign: bool) -> x509.KeyUsage:
        flags = dict.fromkeys(
            (
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
                "encipher_only",
                "decipher_only",
            ),
            False,
        )
        return x509.KeyUsage(digital_signature=sign, key_cert_sign=not sign, crl_sign=not sign, **flags)

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def certificate(subject, public_key, ca: bool):
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name("test CA"))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(usage(not ca), critical=True)
        )
        if not ca:
            eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION])
            builder = (
                builder.add_extension(eku, critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            )
        return builder.sign(ca_key, hashes.SHA256())

    pem = serialization.Encoding.PEM
    chain = certificate("test signer", key.public_key(), False).public_bytes(pem) + certificate(
        "test CA", ca_key.public_key(), True
    ).public_bytes(pem)
    private = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return c2pa.Signer.from_info(c2pa.C2paSignerInfo(b"es256", chain, private, None))


def test_c2pa_manifest_fields():
    import c2pa

    manifest = {
        "claim_generator_info": [{"name": "sdsuite-test", "version": "1.0"}],
        "title": "generated.png",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": AI_TYPE,
                            "softwareAgent": {"name": "SD 1.5"},
                        }
                    ]
                },
            }
        ],
    }
    source, signed = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (256, 256), (10, 120, 200)).save(source, "PNG")
    source.seek(0)
    with c2pa.Builder(manifest) as builder:
        builder.sign(_signer(), "image/png", source, signed)
    data = signed.getvalue()
    meta = extract(Image.open(io.BytesIO(data)), data)
    assert meta["c2pa"]["claim_generator"] == "sdsuite-test"
    assert meta["c2pa"]["actions"] == [
        {
            "action": "c2pa.created",
            "digital_source_type": "trainedAlgorithmicMedia",
            "software_agent": "SD 1.5",
        }
    ]
    assert meta["c2pa"]["signer"] == "sdsuite tests"
    # signed by a certificate nobody trusts: valid signature, untrusted credential
    assert meta["c2pa"]["validation_state"] == "Valid"
    assert "signingCredential.untrusted" in meta["c2pa"]["validation_issues"]
    assert meta["ai_claims"] == ["c2pa"]
    # a byte changed in the image data breaks the manifest's hash binding
    tampered = bytearray(data)
    tampered[-40] ^= 0xFF
    broken = extract(Image.open(io.BytesIO(bytes(data))), bytes(tampered))
    assert broken["c2pa"]["validation_state"] == "Invalid"
    assert "assertion.dataHash.mismatch" in broken["c2pa"]["validation_issues"]


def test_other_text_chunks_are_kept_as_text():
    assert _text_png(Comment="scanned at 300 dpi", Author="me")["text"] == {
        "Comment": "scanned at 300 dpi",
        "Author": "me",
    }


def test_plain_image_has_no_claims():
    meta = extract(*_png(PngInfo()))
    assert meta == {"format": "PNG", "mode": "RGB"}
