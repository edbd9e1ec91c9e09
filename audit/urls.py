from django.urls import URLPattern, URLResolver, path

from audit import console, export, views

urlpatterns: list[URLPattern | URLResolver] = [
    path("consent/", views.consent, name="consent"),
    path("compliance/", console.compliance, name="compliance"),
    path("compliance/jobs.json", console.compliance_jobs, name="compliance_jobs"),
    path("compliance/jobs/export/", console.job_export, name="compliance_job_export"),
    path("compliance/jobs/deletion/", console.job_deletion, name="compliance_job_deletion"),
    path("compliance/jobs/<str:job_id>/retry/", console.job_retry, name="compliance_job_retry"),
    path("compliance/receipts/<str:job_id>/", console.receipt_view, name="compliance_receipt"),
    path("compliance/receipts/<str:job_id>/download/", console.receipt_download, name="compliance_receipt_download"),
    path("compliance/verify/", console.chain_verify, name="compliance_verify"),
    path("compliance/audit/export.jsonl", export.audit_export, name="audit_export"),
    path("compliance/exports/<str:job_id>/download/", views.export_download, name="export_download"),
    path("account/data/", views.my_data, name="my_data"),
    path("account/data/jobs.json", views.my_data_jobs, name="my_data_jobs"),
]
