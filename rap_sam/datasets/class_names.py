"""Class names of the open-vocabulary classifiers.

Each class is one string of comma-separated synonyms; the first synonym is the
plain display name. The CLIP class embeddings (``tools/gen_cls.py``) are built
from these strings, synonym by synonym, so changing a string changes the
classifier that the released checkpoint expects. The synonym lists are the
ones the RAP-SAM reference used.
"""
from typing import List, Sequence

# COCO panoptic things, in the order of the sorted COCO category ids (1..90).
COCO_PANOPTIC_OV_THINGS = (
    'person,child,girl,boy,woman,man,people,children,girls,boys,women,men,'
    'lady,guy,ladies,guys,clothes', 'bicycle,bicycles,bike,bikes', 'car,cars',
    'motorcycle,motorcycles', 'airplane,airplanes', 'bus,buses',
    'train,trains,locomotive,locomotives,freight train', 'truck,trucks',
    'boat,boats', 'traffic light', 'fire hydrant', 'stop sign',
    'parking meter', 'bench,benches', 'bird,birds', 'cat,cats,kitties,kitty',
    'dog,dogs,puppy,puppies', 'horse,horses,foal', 'sheep', 'cow,cows,calf',
    'elephant,elephants', 'bear,bears', 'zebra,zebras', 'giraffe,giraffes',
    'backpack,backpacks', 'umbrella,umbrellas', 'handbag,handbags', 'tie',
    'suitcase,suitcases', 'frisbee', 'skis', 'snowboard', 'sports ball',
    'kite,kites', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
    'tennis racket', 'bottle,bottles,water bottle',
    'wine glass,wine glasses,wineglass', 'cup,cups,water cup,water glass',
    'fork,forks', 'knife,knives', 'spoon,spoons', 'bowl,bowls',
    'banana,bananas', 'apple,apples,apple fruit', 'sandwich,sandwiches',
    'orange fruit', 'broccoli', 'carrot,carrots', 'hot dog', 'pizza',
    'donut,donuts', 'cake,cakes', 'chair,chairs', 'couch,sofa,sofas',
    'potted plant,potted plants,pottedplant,pottedplants,planter,planters',
    'bed,beds',
    'dining table,dining tables,diningtable,diningtables,plate,plates,'
    'diningtable tablecloth', 'toilet', 'tv', 'laptop', 'mouse',
    'tv remote,remote control', 'keyboard', 'cell phone,mobile', 'microwave',
    'oven,ovens', 'toaster', 'sink,sinks', 'refrigerator,fridge', 'book,books',
    'clock', 'vase,vases', 'scissor,scissors', 'teddy bear,teddy bears',
    'hair drier', 'toothbrush,toothbrushes')

# COCO panoptic stuff, in the order of the sorted category ids (92..200).
COCO_PANOPTIC_OV_STUFF = (
    'banner,banners', 'blanket,blankets', 'bridge', 'cardboard', 'counter',
    'curtain,curtains', 'door,doors', 'wood floor', 'flower,flowers',
    'fruit,fruits', 'gravel', 'house', 'lamp,bulb,lamps,bulbs', 'mirror',
    'tennis net', 'pillow,pillows', 'platform',
    'playingfield,tennis court,baseball field,soccer field,tennis field',
    'railroad', 'river', 'road', 'roof', 'sand', 'sea,sea wave,wave,waves',
    'shelf', 'snow', 'stairs', 'tent', 'towel', 'brick wall', 'stone wall',
    'tile wall', 'wood wall', 'water', 'window blind', 'window',
    'tree,trees,palm tree,bushes', 'fence,fences', 'ceiling', 'sky,clouds',
    'cabinet,cabinets', 'table', 'floor,flooring,tile floor', 'pavement',
    'mountain,mountains', 'grass', 'dirt', 'paper', 'food',
    'building,buildings', 'rock', 'wall,walls', 'rug')

# YouTube-VIS 2019, category ids 1..40 in this order. The reference used the
# dataset's own names without synonyms (its class embeddings hold one name
# per class), so they are kept as they are.
YOUTUBE_VIS_2019_CLASSES = ('person', 'giant_panda', 'lizard', 'parrot',
                            'skateboard', 'sedan', 'ape', 'dog', 'snake',
                            'monkey', 'hand', 'rabbit', 'duck', 'cat', 'cow',
                            'fish', 'train', 'horse', 'turtle', 'bear',
                            'motorbike', 'giraffe', 'leopard', 'fox', 'deer',
                            'owl', 'surfboard', 'airplane', 'truck', 'zebra',
                            'tiger', 'elephant', 'snowboard', 'boat', 'shark',
                            'mouse', 'frog', 'eagle', 'earless_seal',
                            'tennis_racket')


def display_names(classes: Sequence[str]) -> List[str]:
    """The first synonym of each class, e.g. ``'person,child,...'`` ->
    ``'person'``; ``'giant_panda'`` -> ``'giant_panda'``."""
    return [name.split(',')[0].strip() for name in classes]
