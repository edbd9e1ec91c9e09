"""GDPR export and deletion jobs, retention and export expiry, over the personal-data registry
(config/personal_data.py) to which every app contributes the handlers of its own data.

jobs: requests, leases, runs, recovery · export: the zip, download links, expiry · deletion: erasure steps and
the receipt · retention: the tenant's retention period · handlers: the audit app's own data.
"""

from audit.gdpr.deletion import deletion_run, deletion_steps
from audit.gdpr.export import DownloadRefused, download_check, export_expire, export_run, may_download
from audit.gdpr.jobs import gdpr_enqueue, gdpr_recover, gdpr_request, gdpr_retry, gdpr_run, job_claim
from audit.gdpr.lease import JobRefused
from audit.gdpr.retention import retention_run

__all__ = ["DownloadRefused", "JobRefused", "deletion_run", "deletion_steps", "download_check", "export_expire",
           "export_run", "gdpr_enqueue", "gdpr_recover", "gdpr_request", "gdpr_retry", "gdpr_run", "job_claim",
           "may_download", "retention_run"]
