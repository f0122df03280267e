"""PAdES signatures for certificates (pyHanko), and the service's signing identity.

Without configured key and certificate files, a local CA and a signing certificate (with the
nonRepudiation key usage pyHanko expects) are created on first use and kept outside git. The CA
certificate is what a verifier trusts: `pyhanko sign validate --trust ca.pem`, or pdfsig with the
CA imported into an NSS database. Pure Python: no Django.
"""

from __future__ import annotations

import datetime
import hashlib
import subprocess
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


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


def sign_pdf(pdf: bytes, identity: SigningIdentity, *, reason: str, location: str) -> bytes:
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers

    signer = signers.SimpleSigner.load(
        str(identity.key_file), str(identity.cert_file), ca_chain_files=(str(identity.ca_file),),
        key_passphrase=identity.passphrase,
    )
    metadata = signers.PdfSignatureMetadata(field_name="CertificateSignature", md_algorithm="sha256",
                                            reason=reason, location=location)
    output = signers.sign_pdf(IncrementalPdfFileWriter(BytesIO(pdf)), metadata, signer=signer)
    return output.getvalue()


@dataclass(frozen=True)
class SignatureCheck:
    intact: bool
    valid: bool
    trusted: bool
    signer: str
    summary: str

    @property
    def ok(self) -> bool:
        return self.intact and self.valid and self.trusted


def validate_pdf(pdf: bytes, ca_pem: bytes) -> SignatureCheck:
    """Validate the PDF's signature against a trusted CA with pyHanko's own validator."""
    from asn1crypto import pem
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    _, _, ca_der = pem.unarmor(ca_pem)
    context = ValidationContext(trust_roots=[asn1_x509.Certificate.load(ca_der)])
    signatures = PdfFileReader(BytesIO(pdf)).embedded_signatures
    if not signatures:
        return SignatureCheck(False, False, False, "", "the PDF carries no signature")
    status = validate_pdf_signature(signatures[0], context)
    return SignatureCheck(
        intact=bool(status.intact), valid=bool(status.valid), trusted=bool(status.trusted),
        signer=status.signing_cert.subject.human_friendly, summary=status.summary(),
    )


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
