"""The pipeline: the task graph (:mod:`.graph`) and rendering it to KFP component files, an Argo Workflow and a KFP v2 package (:mod:`.render`)."""
