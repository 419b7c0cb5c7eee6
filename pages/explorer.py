"""Dataset explorer: what HAM10000 contains, from the bundled metadata (+ images if here)."""

import plotly.express as px
import streamlit as st

from app import resources, ui
from lesionlib import views
from lesionlib.classes import CLASS_DESCRIPTIONS, CLASS_LONG_NAMES, CLASS_NAMES

GALLERY_SIZE = 24
EXAMPLES = 4


def case_details(row) -> str:
    """Body site and age of a metadata row (never the diagnosis)."""
    age = "?" if row["age"] != row["age"] else int(row["age"])
    return f"{row['localization']} · age {age}"


ui.require_user()
st.title("Dataset explorer: HAM10000")
st.caption("10,015 dermoscopic images of 7,470 lesions (Tschandl et al., Sci Data 2018, "
           "CC BY-NC 4.0). The distributions come from the official metadata shipped with "
           "lesionlib, so they work without the images.")

metadata = resources.bundled_metadata()

with st.sidebar:
    st.markdown("**Filter**")
    classes = st.multiselect("Diagnosis", CLASS_NAMES, key="explorer_classes",
                             format_func=ui.class_label)
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
paths, origin = resources.image_paths()
for name in (classes or CLASS_NAMES):
    with st.expander(ui.class_label(name)):
        st.write(CLASS_DESCRIPTIONS[name])
        examples = metadata[(metadata["dx"] == name) & metadata["image_id"].isin(list(paths))]
        examples = examples.sample(min(EXAMPLES, len(examples)), random_state=0)
        for column, image_id in zip(st.columns(EXAMPLES), examples["image_id"]):
            thumbnail = resources.thumbnail(paths[image_id])
            if thumbnail is not None:
                column.image(thumbnail, caption=f"{name} · {image_id}", width="stretch")

st.subheader("Gallery")
if resources.dataset_dir() is None:
    st.info("The HAM10000 images are not here, so the gallery shows only the bundled sample "
            "images. To browse all 10,015, put the dataset in `../shared/data/ham10000` or set "
            "`LESIONLIB_DATA` to a folder with its `labels.csv` and `images/`.")
shown = filtered[filtered["image_id"].isin(list(paths))].sort_values("image_id")
pages = max(1, -(-len(shown) // GALLERY_SIZE))
left, right = st.columns(2)
page = left.number_input(f"Page (of {pages})", 1, pages, 1, key="explorer_gallery_page")
reveal = right.toggle("Show the diagnoses", key="explorer_reveal",
                      help="Hidden by default: look first, then reveal (or open a case).")
st.caption(f"{len(shown):,} matching images available from {origin}; page {page} of {pages}, "
           f"{GALLERY_SIZE} per page. Click 'Open' under an image to look at the case.")
shown = shown.iloc[(page - 1) * GALLERY_SIZE:page * GALLERY_SIZE]
opened = st.session_state.get("explorer_open")
if opened in paths:
    row = metadata[metadata["image_id"] == opened].iloc[0]
    with st.container(border=True):
        left, right = st.columns([2, 3])
        opened_image = resources.thumbnail(paths[opened], 600)
        revealed = right.toggle("Reveal the diagnosis", key=f"explorer_reveal_{opened}") or reveal
        if opened_image is not None:  # the id can be looked up, so it waits for the reveal too
            left.image(opened_image, caption=opened if revealed else "diagnosis hidden",
                       width="stretch")
        right.markdown(f"**Case {opened if revealed else '(id hidden until the reveal)'}** · "
                       f"{case_details(row)}")
        if revealed:
            right.success(f"**{ui.class_label(row['dx'])}**, confirmed by "
                          f"{views.DX_TYPE_WORDS.get(row['dx_type'], row['dx_type'])}; "
                          f"lesion {row['lesion_id']}.")
            right.caption(CLASS_DESCRIPTIONS[row["dx"]])
            right.page_link("pages/case_review.py", label=f"Open {opened} in Case review",
                            query_params={"case": opened})
        if right.button("Close", key="explorer_close"):
            st.session_state.pop("explorer_open", None)
            st.rerun()
for start in range(0, len(shown), 6):
    for column, (_, row) in zip(st.columns(6), shown.iloc[start:start + 6].iterrows()):
        thumbnail = resources.thumbnail(paths[row["image_id"]])
        if thumbnail is not None:
            details = case_details(row)
            column.image(thumbnail, caption=f"{row['dx']} · {details}" if reveal else details,
                         width="stretch")
            if column.button("Open", key=f"explorer_open_{row['image_id']}"):
                st.session_state["explorer_open"] = row["image_id"]
                st.rerun()
