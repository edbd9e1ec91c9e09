from django.urls import URLPattern, URLResolver, path

from audit import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("consent/", views.consent, name="consent"),
    path("compliance/", views.compliance, name="compliance"),
    path("compliance/jobs.json", views.compliance_jobs, name="compliance_jobs"),
    path("compliance/exports/<str:job_id>/download/", views.export_download, name="export_download"),
    path("account/data/", views.my_data, name="my_data"),
]
