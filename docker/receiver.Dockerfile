FROM python:3.11-slim
RUN pip install --no-cache-dir standardwebhooks
COPY relay/sample-receiver/receiver.py /receiver.py
CMD ["python", "/receiver.py", "8000"]
