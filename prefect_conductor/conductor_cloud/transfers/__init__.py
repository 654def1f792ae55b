"""Moving bytes: md5s and their cache, staging, upload roots, uploads, downloads and frame checks."""
