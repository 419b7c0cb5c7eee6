"""Dataset explorer: what HAM10000 contains, from the bundled metadata (+ images if here)."""

import plotly.express as px
import streamlit as st

import app_resources
import app_ui
from lesionlib import views
from lesionlib.classes import CLASS_DESCRIPTIONS, CLASS_LONG_NAMES, CLASS_NAMES

GALLERY_SIZE = 24

app_ui.require_user()
st.title("Dataset explorer: HAM10000")
st.caption("10,015 dermoscopic images of 7,470 lesions (Tschandl et al., Sci Data 2018, "
           "CC BY-NC 4.0). The distributions come from the official metadata shipped with "
           "lesionlib, so they work without the images.")

metadata = app_resources.bundled_metadata()

with st.sidebar:
    st.markdown("**Filter**")
    classes = st.multiselect("Diagnosis", CLASS_NAMES, key="explorer_classes",
                             format_func=app_ui.class_label)
    sites = st.multiselect("Body site", sorted(metadata["localization"].dropna().unique()),
                           key="explorer_sites")
    age_range = st.slider("Age", 0, 90, (0, 90), 5, key="explorer_age")
    split = st.selectbox("Split", ["all", "train", "val", "test"], key="explorer_split")

filtered = views.filter_metadata(metadata, classes, sites,
                                 None if age_range == (0, 90) else age_range,
                                 include_unknown_age=age_range == (0, 90))
if split != "all":
    filtered = filtered[filtered["split_lesion_grouped"] == split]
st.markdown(f"**{len(filtered):,} images** of {filtered['lesion_id'].nunique():,} lesions match "
            f"the filters (of {len(metadata):,}).")
if filtered.empty:
    st.info("No image matches these filters: widen them in the sidebar.")
    st.stop()

class_counts = views.distribution(filtered, "dx")
class_counts["diagnosis"] = class_counts["dx"].map(lambda name: CLASS_LONG_NAMES.get(name, name))
st.plotly_chart(px.bar(class_counts, x="dx", y="images", text="images", hover_data=["diagnosis"],
                       title="Diagnoses (note the imbalance: most lesions are nevi)"),
                key="explorer_classes_chart")

left, right = st.columns(2)
left.plotly_chart(px.histogram(filtered, x="age", color="dx", nbins=18, barmode="stack",
                               category_orders={"dx": list(CLASS_NAMES)},
                               title="Age by diagnosis"), key="explorer_age_chart")
right.plotly_chart(px.bar(views.distribution(filtered, "sex", by_class=True), x="sex", y="images",
                          color="dx", category_orders={"dx": list(CLASS_NAMES)},
                          title="Sex by diagnosis"), key="explorer_sex_chart")
left, right = st.columns(2)
left.plotly_chart(px.bar(views.distribution(filtered, "localization", by_class=True),
                         x="images", y="localization", color="dx", orientation="h",
                         category_orders={"dx": list(CLASS_NAMES)}, title="Body site"),
                  key="explorer_site_chart")
right.plotly_chart(px.bar(views.distribution(filtered, "dx_type", by_class=True), x="dx_type",
                          y="images", color="dx", category_orders={"dx": list(CLASS_NAMES)},
                          title="How the diagnosis was confirmed"), key="explorer_dxtype_chart")
st.caption("dx_type: histo = histopathology, follow_up = unchanged at follow-up, consensus = "
           "expert consensus, confocal = in-vivo confocal microscopy.")

st.subheader("The seven classes, in plain language")
for name in (classes or CLASS_NAMES):
    with st.expander(app_ui.class_label(name)):
        st.write(CLASS_DESCRIPTIONS[name])

st.subheader("Gallery")
paths, origin = app_resources.image_paths()
if app_resources.dataset_dir() is None:
    st.info("The HAM10000 images are not here, so the gallery shows only the bundled sample "
            "images. To browse all 10,015, put the dataset in `../shared/data/ham10000` or set "
            "`LESIONLIB_DATA` to a folder with its `labels.csv` and `images/`.")
shown = filtered[filtered["image_id"].isin(list(paths))]
st.caption(f"{len(shown):,} matching images available from {origin}; showing up to "
           f"{GALLERY_SIZE}.")
shown = shown.sample(min(GALLERY_SIZE, len(shown)), random_state=0) if len(shown) else shown
for start in range(0, len(shown), 6):
    for column, (_, row) in zip(st.columns(6), shown.iloc[start:start + 6].iterrows()):
        thumbnail = app_resources.thumbnail(paths[row["image_id"]])
        if thumbnail is not None:
            age = "?" if row["age"] != row["age"] else int(row["age"])
            column.image(thumbnail, caption=f"{row['dx']} · {row['localization']} · {age}",
                         width="stretch")
