"""The data wing: readers of the public layouts, synthetic stand-ins, the prepared cache, augmentation.

Import from the module that does the job (nothing is re-exported here, so reading one dataset loads only its
reader)::

    farnet_lite.data.isbi2015 / hand / spine / custom   read_isbi2015, read_hand, read_spine, read_custom
                                                        -> LandmarkDataset (lazy sequence of Sample)
    farnet_lite.data.sample                             Sample, LandmarkDataset, MetricSpec, dataset_summary
    farnet_lite.data.imageio (+ dicom)                  reading any radiograph as grey uint8
    farnet_lite.data.synthetic (+ procedural)           the same layouts without the real data
    farnet_lite.data.cache                              prepare_cache / load_cache: images resized once
    farnet_lite.data.augment                            batched torch augmentation
    farnet_lite.data.errors                             DatasetError: one sentence naming the file and the fix
"""
