"""PAdES signatures for certificates (pyHanko), and the service's signing identity.

Without configured key and certificate files, a local CA and a signing certificate (with the
nonRepudiation key usage pyHanko expects) are created on first use and kept outside git. The CA
certificate is what a verifier trusts: `pyhanko sign validate --trust ca.pem`, or pdfsig with the
CA imported into an NSS database. The signature is PAdES baseline B-B (ETSI.CAdES.detached), B-T
with an RFC 3161 timestamp when a timestamp authority is configured; it is visible on the last
page. Pure Python: no Django.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import logging
import subprocess
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from audits.certificate_pdf import BODY_FONT, SIGNATURE_BOX, font_file

FIELD_NAME = "CertificateSignature"
STAMP_FONT_SIZE = 7


@dataclass(frozen=True)
class SigningIdentity:
    key_file: Path
    cert_file: Path
    ca_file: Path
    passphrase: bytes | None = None

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_file.read_bytes())

    def subject(self) -> str:
        return self.certificate().subject.rfc4514_string()

    def fingerprint(self) -> str:
        return self.certificate().fingerprint(hashes.SHA256()).hex()

    def ca_fingerprint(self) -> str:
        return x509.load_pem_x509_certificate(self.ca_file.read_bytes()).fingerprint(hashes.SHA256()).hex()


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Unlearning Compliance Service"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _write_key(path: Path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def create_local_identity(directory: Path, issuer_name: str) -> SigningIdentity:
    """A self-signed CA and a signing certificate it issues (RSA-2048, SHA-256)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = _name(f"{issuer_name} Root CA")
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    signer_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer_cert = (
        x509.CertificateBuilder().subject_name(_name(f"{issuer_name} Certificate Signer")).issuer_name(ca_name)
        .public_key(signer_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(directory / "ca.key", ca_key)
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(directory / "signer.key", signer_key)
    (directory / "signer.pem").write_bytes(signer_cert.public_bytes(serialization.Encoding.PEM))
    return SigningIdentity(directory / "signer.key", directory / "signer.pem", directory / "ca.pem")


@dataclass(frozen=True)
class TimestampAuthority:
    """An RFC 3161 timestamp authority: its token proves the signature existed at that time,
    whatever the signer's clock said (PAdES B-T)."""
    url: str
    timeout_seconds: int


class TimestampUnavailable(RuntimeError):
    """The configured timestamp authority gave no token: the PDF is not signed without one."""


def sign_pdf(pdf: bytes, identity: SigningIdentity, *, reason: str, location: str,
             timestamp: TimestampAuthority | None = None) -> bytes:
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko.sign.timestamps import HTTPTimeStamper, TimestampRequestError

    signer = signers.SimpleSigner.load(
        str(identity.key_file), str(identity.cert_file), ca_chain_files=(str(identity.ca_file),),
        key_passphrase=identity.passphrase,
    )
    metadata = signers.PdfSignatureMetadata(field_name=FIELD_NAME, md_algorithm="sha256", reason=reason,
                                            location=location, subfilter=fields.SigSeedSubFilter.PADES)
    pdf_signer = signers.PdfSigner(
        metadata, signer=signer, stamp_style=_stamp_style(timestamped=timestamp is not None),
        timestamper=HTTPTimeStamper(timestamp.url, timeout=timestamp.timeout_seconds) if timestamp else None,
        new_field_spec=fields.SigFieldSpec(FIELD_NAME, on_page=-1, box=SIGNATURE_BOX),
    )
    try:
        output = pdf_signer.sign_pdf(IncrementalPdfFileWriter(BytesIO(pdf)))
    except TimestampRequestError as error:
        raise TimestampUnavailable(f"the timestamp authority {timestamp.url} gave no timestamp "
                                   f"({_why(error, timestamp)}); the certificate was not signed") from error
    return output.getvalue()


def _why(error: Exception, timestamp: TimestampAuthority) -> str:
    """What went wrong at the TSA: pyHanko's own message only says it could not contact it."""
    if isinstance(error.__cause__, TimeoutError):
        return f"no answer within {timestamp.timeout_seconds} s"
    return str(error.__cause__ or error)


def _stamp_style(*, timestamped: bool):
    """The visible signature: who signed and when, in the certificate's own font, embedded."""
    from pyhanko.pdf_utils.text import TextBoxStyle
    from pyhanko.stamp import TextStampStyle

    return TextStampStyle(
        stamp_text="Digitally signed by %(signer)s\nSigning time: %(ts)s\nPAdES signature"
                   + (" with an RFC 3161 timestamp" if timestamped else ""),
        timestamp_format="%Y-%m-%d %H:%M:%S %Z",
        text_box_style=TextBoxStyle(font=_StampFont(STAMP_FONT_SIZE), font_size=STAMP_FONT_SIZE,
                                    leading=STAMP_FONT_SIZE + 2),
        border_width=1,
    )


@dataclass(frozen=True)
class _StampFont:
    """pyHanko's font engine factory (what GlyphAccumulatorFactory does for a font file), for DejaVu
    Sans scaled to 1000 units to the em: pyHanko 0.38 writes a TrueType font's glyph widths (/W) in
    the font's own units, which readers take as thousandths of an em, and DejaVu's 2048 to the em
    spread the stamp's letters twice as far apart as they should be."""
    size: int

    def create_font_engine(self, writer, obj_stream=None):
        from pyhanko.pdf_utils.font.opentype import GlyphAccumulator

        logging.getLogger("fontTools.subset").setLevel(logging.WARNING)  # else 30 lines at INFO per certificate
        return GlyphAccumulator(writer, BytesIO(_stamp_font_program()), self.size, obj_stream=obj_stream)


@functools.cache
def _stamp_font_program() -> bytes:
    from fontTools.ttLib import TTFont
    from fontTools.ttLib.scaleUpem import scale_upem

    font = TTFont(str(font_file(BODY_FONT)))
    del font["FFTM"]  # FontForge's build dates: nothing to draw, and fontTools warns that it cannot subset it
    scale_upem(font, 1000)  # about a second: once per process
    buffer = BytesIO()
    font.save(buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class SignatureCheck:
    intact: bool
    valid: bool
    trusted: bool
    signer: str
    summary: str
    subfilter: str = ""  # /ETSI.CAdES.detached: PAdES
    timestamped: bool = False  # the signature carries an RFC 3161 timestamp token (PAdES B-T)
    timestamp_trusted: bool = False  # that token is intact and its TSA chains to a trusted CA

    @property
    def ok(self) -> bool:
        """The signature itself; a timestamp is judged apart (timestamp_trusted), against its own CA."""
        return self.intact and self.valid and self.trusted


def validate_pdf(pdf: bytes, ca_pem: bytes, *, timestamp_ca_pem: bytes | None = None) -> SignatureCheck:
    """Validate the PDF's signature against a trusted CA with pyHanko's own validator, and its
    timestamp, if any, against the timestamp authority's CA (none given: the same CA)."""
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature

    signatures = PdfFileReader(BytesIO(pdf)).embedded_signatures
    if not signatures:
        return SignatureCheck(False, False, False, "", "the PDF carries no signature")
    signature = signatures[0]
    context = _trusting(ca_pem)
    status = validate_pdf_signature(signature, context,
                                    ts_validation_context=_trusting(timestamp_ca_pem) if timestamp_ca_pem else context)
    timestamp = status.timestamp_validity
    return SignatureCheck(
        intact=bool(status.intact), valid=bool(status.valid), trusted=bool(status.trusted),
        signer=status.signing_cert.subject.human_friendly, summary=status.summary(),
        subfilter=str(signature.sig_object.get("/SubFilter", "")), timestamped=timestamp is not None,
        timestamp_trusted=timestamp is not None and bool(timestamp.intact and timestamp.valid and timestamp.trusted),
    )


def _trusting(ca_pem: bytes):
    from asn1crypto import pem
    from asn1crypto import x509 as asn1_x509
    from pyhanko_certvalidator import ValidationContext

    _, _, ca_der = pem.unarmor(ca_pem)
    return ValidationContext(trust_roots=[asn1_x509.Certificate.load(ca_der)])


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pdfsig_report(pdf: Path, ca: Path, nss_dir: Path) -> subprocess.CompletedProcess:
    """poppler's pdfsig (an independent verifier), with the CA imported as a trust anchor into an
    NSS database made on first use; pdfsig then says whether the signer's certificate is trusted."""
    if not (nss_dir / "cert9.db").exists():
        nss_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["certutil", "-N", "-d", f"sql:{nss_dir}", "--empty-password"], check=True, capture_output=True)
        subprocess.run(["certutil", "-A", "-d", f"sql:{nss_dir}", "-n", "service-ca", "-t", "CT,C,C", "-i", str(ca)],
                       check=True, capture_output=True)
    return subprocess.run(["pdfsig", "-nssdir", f"sql:{nss_dir}", str(pdf)], capture_output=True, text=True)
