"""A mail's attachments are read by their own loaders, under the mail's heading; unreadable ones are named."""

from __future__ import annotations

import sys
from email.message import EmailMessage
from pathlib import Path

from ingest.loaders import load_document

sys.path.insert(0, str(Path(__file__).parent))
from cfb_writer import build_msg  # noqa: E402
from office_files import docx_bytes  # noqa: E402

CONTRACT_SENTENCE = "合同规定供应商在五月底前交付两百台服务器"


def _eml() -> bytes:
    message = EmailMessage()
    message["Subject"] = "Signed contract"
    message["From"] = "legal@example.com"
    message["To"] = "team@example.com"
    message.set_content("Hello team, the signed contract is attached.")
    message.add_attachment(docx_bytes([CONTRACT_SENTENCE], heading="Supply contract"), maintype="application",
                           subtype="vnd.openxmlformats-officedocument.wordprocessingml.document",
                           filename="contract.docx")
    message.add_attachment(b"item,price\nserver,4200\nswitch,900\n", maintype="text", subtype="csv",
                           filename="prices.csv")
    message.add_attachment(b"MZ\x90\x00 not for us", maintype="application", subtype="octet-stream",
                           filename="setup.exe")
    message.add_attachment(b"%PDF-1.4 cut off", maintype="application", subtype="pdf", filename="scan.pdf")
    return message.as_bytes()


def test_eml_attachments_are_read_under_the_mail_heading(tmp_path: Path) -> None:
    document = load_document(tmp_path / "contract.eml", "contract.eml", _eml())
    by_heading = {section.heading: section.text for section in document.sections}
    contract = next(text for heading, text in by_heading.items() if heading and "contract.docx" in heading)
    assert CONTRACT_SENTENCE in contract.replace(" ", "")
    assert any(heading and heading.startswith("Signed contract > contract.docx") for heading in by_heading)
    prices = next(text for heading, text in by_heading.items() if heading and "prices.csv" in heading)
    assert "| server | 4200 |" in prices and "| item | price |" in prices
    listing = next(text for text in by_heading.values() if text.startswith("Attachments: "))
    assert "contract.docx, prices.csv, setup.exe (not read: unsupported type), scan.pdf (not read: damaged PDF" \
        in listing
    assert "the signed contract is attached" in "\n".join(section.text for section in document.sections)


def test_msg_attachments_are_read(tmp_path: Path) -> None:
    data = build_msg("Server order", "See the attached contract.", "buyer@example.com",
                     {"contract.docx": docx_bytes([CONTRACT_SENTENCE], heading="Supply contract")})
    document = load_document(tmp_path / "order.msg", "order.msg", data)
    text = "\n".join(section.text for section in document.sections)
    assert "Attachments: contract.docx" in text
    assert CONTRACT_SENTENCE in text.replace(" ", "")
    assert any(s.heading and s.heading.startswith("Server order > contract.docx") for s in document.sections)


def test_search_finds_a_mail_by_its_attachment(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "contract.eml").write_bytes(_eml())
    (folder / "lunch.eml").write_bytes(b"Subject: Lunch\n\nPizza on Friday.\n")
    service.create_kb("mail", "")
    report = service.ingest("mail", [folder])
    assert report.failed == [] and report.formats["eml"].indexed == 2
    hits = service.search("mail", "供应商交付服务器", top_k=3, mode="bm25")
    assert hits and hits[0].source == "contract.eml"
    assert "contract.docx" in (hits[0].heading or "")
