"""Render a page jaxcnn wrote (e.g. `jaxcnn explain --html`) to a PNG for the README, without a browser.

Needs `pip install weasyprint pypdfium2` (not dependencies of jaxcnn; weasyprint uses the system's Pango):
weasyprint lays the page out to a PDF, pdfium rasterizes it.

Usage: python docs/tools/html_to_png.py PAGE.html OUT.png [--width PX] [--scale S]
"""
import argparse
import io

import pypdfium2
import weasyprint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page")
    ap.add_argument("out")
    ap.add_argument("--width", type=int, default=860, help="page width in CSS pixels")
    ap.add_argument("--scale", type=float, default=1.5, help="pixels per CSS pixel in the PNG")
    a = ap.parse_args()
    # One tall page as wide as a browser window, so the picture is the page as one scrolls it, not a paper sheet.
    page_css = weasyprint.CSS(string=f"@page {{ size: {a.width}px 20000px; margin: 12px }} body {{ margin: 0 }}")
    document = weasyprint.HTML(filename=a.page).render(stylesheets=[page_css])
    height = max(box.position_y + box.height for box in _boxes(document.pages[0]._page_box)
                 if not getattr(box, "children", None)) + 60
    pdf = weasyprint.CSS(string=f"@page {{ size: {a.width}px {int(height)}px; margin: 12px }} body {{ margin: 0 }}")
    data = weasyprint.HTML(filename=a.page).write_pdf(stylesheets=[pdf])
    pdf_doc = pypdfium2.PdfDocument(io.BytesIO(data))
    pdf_doc[0].render(scale=a.scale * 96 / 72).to_pil().save(a.out, optimize=True)


def _boxes(box):
    yield box
    for child in getattr(box, "children", []):
        yield from _boxes(child)


if __name__ == "__main__":
    main()
