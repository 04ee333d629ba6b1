"""Training curves inside Slicer: a table of the trainer's epoch events, plotted as loss and metric series.

The table (epoch, loss, validation metric, seconds left) goes through the bridge's typed table
writer; two plot series (loss, metric, each against the epoch) and one chart are created once and
referenced from the table node, so each refresh only rewrites the table. The widget shows the chart
in a plot view; no Qt here.
"""

from __future__ import annotations

from spinebrain.tables import Column

from .bridge import table_node_from_records

SERIES_ROLE = "SpineBrain.CurveSeries"
CHART_ROLE = "SpineBrain.CurveChart"


def metric_name(epochs: list[dict]) -> str | None:
    """The validation metric the trainer reports (``val_...``), from its epoch events."""
    for event in epochs:
        for key in event:
            if key.startswith("val_"):
                return key
    return None


def fill_curves(scene, epochs: list[dict], name: str, table_node=None):
    """Write ``epochs`` into ``table_node`` (or a new one), with its plot series and chart; the table node."""
    metric = metric_name(epochs)  # the column is "metric" whatever the trainer calls it: the series stay valid
    columns = [Column("epoch", "int"), Column("loss", "float"), Column("metric", "float"),
               Column("seconds_left", "float", "s")]
    records = [{"epoch": int(e.get("epoch", 0)), "loss": e.get("loss"), "metric": e.get(metric) if metric else None,
                "seconds_left": e.get("seconds_left")} for e in epochs]
    table = table_node_from_records(scene, records, columns, f"{name} training curves", table_node)
    chart = table.GetNodeReference(CHART_ROLE)
    if chart is None:
        chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{name} training curves")
        chart.SetXAxisTitle("epoch")
        chart.SetYAxisTitle("loss / metric")
        table.SetNodeReferenceID(CHART_ROLE, chart.GetID())
    if table.GetNumberOfNodeReferences(SERIES_ROLE) == 0:
        for column, colour in (("loss", (0.8, 0.2, 0.1)), ("metric", (0.1, 0.4, 0.8))):
            series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} {column}")
            series.SetAndObserveTableNodeID(table.GetID())
            series.SetXColumnName("epoch")
            series.SetYColumnName(column)
            series.SetPlotType(series.PlotTypeScatter)
            series.SetColor(*colour)
            chart.AddAndObservePlotSeriesNodeID(series.GetID())
            table.AddNodeReferenceID(SERIES_ROLE, series.GetID())
    return table
