"""``python -m app.deploy -i DICOM_DIR -o OUT_DIR -m MODEL.ts`` (also the MAP entry point)."""

import sys

from app.deploy.app import main

if __name__ == "__main__":
    sys.exit(main())
