# The RAG assistant: one image for the app (`rag serve`) and the scheduler (`rag scheduler`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    GRADIO_ANALYTICS_ENABLED=False \
    DO_NOT_TRACK=1 \
    XDG_CACHE_HOME=/opt/rag-cache \
    RAG_HOME=/data/rag

# libgomp1: FAISS and torch's OpenMP runtime; libmagic1: file type detection in unstructured;
# tesseract (OCR of scans and images) and LibreOffice (legacy .doc/.xls/.ppt) as in `make system-deps`.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libmagic1 \
        tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim \
        libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/*

# CPU torch first, from the PyTorch CPU index: a bare `torch` from PyPI would pull a multi-GB CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY . /app
# Editable: the prompt templates are read from /app/prompts beside the rag package. The [milvus] extra
# (pymilvus) lets the same image run store.backend: milvus (the compose file's scale profile).
RUN pip install -e '.[milvus]' \
    && python -c "import torch, sys; sys.exit('CUDA torch in the image' if torch.version.cuda else 0)" \
    && rag models prepare

# Run as an unprivileged user: a parser exploited by a hostile file gets no root in the container.
RUN useradd --system --uid 10001 --home-dir /data/rag --shell /usr/sbin/nologin rag \
    && mkdir -p /data/rag \
    && chown -R rag:rag /data/rag \
    && chmod -R a+rX /opt/rag-cache /app
USER rag

VOLUME ["/data/rag"]
EXPOSE 8000
CMD ["rag", "serve", "--host", "0.0.0.0"]
