"""gunicorn's own settings (the Procfile's `web` passes the rest on its command line).

The master process logs before it loads the application (and so before the Django settings
install redaction): install it here too, so no process of the web tier writes a secret.
"""
from convos.log_redaction import install_record_redaction

install_record_redaction()
